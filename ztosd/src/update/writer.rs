//! Streams a root image into the inactive slot's root partition and verifies it.
//!
//! ```text
//!  artifact reader ──4 MiB buffers──▶ writer thread ──write──▶ partition (page cache)
//!  (hashes, checks size)  ◀──empty buffers──┘           fdatasync once, drop the cache,
//!                                                        re-read + sha256 == manifest
//! ```
//!
//! Reading (network, signature hashing) and writing overlap through two buffers in flight;
//! there is no fsync per chunk. The re-read goes to the device, not the page cache: the
//! written range is dropped from the cache after the sync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

/// The size of one write (and one read of the verification pass).
pub const CHUNK_BYTES: usize = 4 << 20;

/// Buffers in flight between the reader and the writer thread.
const BUFFERS: usize = 3;

/// Why writing the root failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The image is larger than the partition; nothing was written.
    #[error("the root image ({size} bytes) does not fit in {} ({capacity} bytes)", target.display())]
    DoesNotFit {
        target: PathBuf,
        size: u64,
        capacity: u64,
    },
    /// The source failed: the bundle reader's own message (hash or size mismatch, truncated
    /// upload, network error).
    #[error("{0}")]
    Source(std::io::Error),
    #[error("the root image ended after {written} of {expected} bytes")]
    Short { written: u64, expected: u64 },
    #[error("{action} {}: {reason}", target.display())]
    Io {
        action: &'static str,
        target: PathBuf,
        reason: std::io::Error,
    },
    #[error("re-reading {} gave sha256 {found}, the manifest says {expected}: the disk did not keep what was written", target.display())]
    Verify {
        target: PathBuf,
        found: String,
        expected: String,
    },
}

impl WriteError {
    fn io(action: &'static str, target: &Path, reason: std::io::Error) -> WriteError {
        WriteError::Io {
            action,
            target: target.to_path_buf(),
            reason,
        }
    }
}

/// How many bytes `target` can hold: a block device's size, or a regular file's length (the
/// tests use plain files as partitions; they are never grown).
pub fn capacity(target: &Path) -> Result<u64, WriteError> {
    let mut file = File::open(target).map_err(|e| WriteError::io("opening", target, e))?;
    let meta = file
        .metadata()
        .map_err(|e| WriteError::io("inspecting", target, e))?;
    if meta.file_type().is_block_device() {
        file.seek(SeekFrom::End(0))
            .map_err(|e| WriteError::io("sizing", target, e))
    } else if meta.is_file() {
        Ok(meta.len())
    } else {
        Err(WriteError::io(
            "writing",
            target,
            std::io::Error::other("not a block device or a regular file"),
        ))
    }
}

/// Writes exactly `size` bytes from `source` to the start of `target`, then syncs. Calls
/// `progress` with the bytes written so far after each chunk. The caller must have checked
/// that the image fits ([`capacity`]); this refuses again rather than write past the end.
pub fn write_root(
    source: &mut dyn Read,
    target: &Path,
    size: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), WriteError> {
    let capacity = capacity(target)?;
    if size > capacity {
        return Err(WriteError::DoesNotFit {
            target: target.to_path_buf(),
            size,
            capacity,
        });
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(|e| WriteError::io("opening", target, e))?;
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // Cannot fail: the channel has room for every buffer and the receiver is alive.
        let _ = empty_tx.send(vec![0u8; CHUNK_BYTES]);
    }
    std::thread::scope(|scope| -> Result<(), WriteError> {
        let writer = scope.spawn(move || -> Result<u64, WriteError> {
            let mut written = 0u64;
            for (buffer, len) in full_rx {
                file.write_all(&buffer[..len])
                    .map_err(|e| WriteError::io("writing", target, e))?;
                written += len as u64;
                progress(written);
                if empty_tx.send(buffer).is_err() {
                    break;
                }
            }
            file.sync_data()
                .map_err(|e| WriteError::io("syncing", target, e))?;
            Ok(written)
        });
        let mut read_total = 0u64;
        let mut outcome = Ok(());
        while read_total < size {
            let Ok(mut buffer) = empty_rx.recv() else {
                break; // the writer stopped: its error is reported below
            };
            let want = CHUNK_BYTES.min((size - read_total) as usize);
            match fill(source, &mut buffer[..want]) {
                Ok(0) => {
                    outcome = Err(WriteError::Short {
                        written: read_total,
                        expected: size,
                    });
                    break;
                }
                Ok(len) => {
                    read_total += len as u64;
                    if full_tx.send((buffer, len)).is_err() {
                        break;
                    }
                }
                Err(err) => {
                    outcome = Err(WriteError::Source(err));
                    break;
                }
            }
        }
        // The artifact reader reports a hash mismatch when its last byte has been read; one
        // more read past the end makes sure that happens before the write counts as done.
        if outcome.is_ok() && read_total == size {
            let mut probe = [0u8; 1];
            match source.read(&mut probe) {
                Ok(0) => {}
                Ok(_) => {
                    outcome = Err(WriteError::Source(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the root image is longer than its {size} bytes"),
                    )))
                }
                Err(err) => outcome = Err(WriteError::Source(err)),
            }
        }
        drop(full_tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(WriteError::io(
                "writing",
                target,
                std::io::Error::other("the writer thread panicked"),
            ))
        });
        outcome?;
        let written = written?;
        if written != size {
            return Err(WriteError::Short {
                written,
                expected: size,
            });
        }
        Ok(())
    })
}

/// Reads until `buffer` is full or the source ends; returns the bytes read.
fn fill(source: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Re-reads the first `size` bytes of `target` from the device (the page cache for that
/// range is dropped first) and compares their sha256 with `expected` (lowercase hex).
pub fn verify_root(
    target: &Path,
    size: u64,
    expected: &str,
    progress: &dyn Fn(u64),
) -> Result<(), WriteError> {
    let mut file = File::open(target).map_err(|e| WriteError::io("opening", target, e))?;
    // Best effort: on a filesystem without a page cache to drop (tmpfs) this is a no-op.
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        size as i64,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut done = 0u64;
    while done < size {
        let want = CHUNK_BYTES.min((size - done) as usize);
        let len = fill(&mut file, &mut buffer[..want])
            .map_err(|e| WriteError::io("re-reading", target, e))?;
        if len == 0 {
            return Err(WriteError::io(
                "re-reading",
                target,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the partition ended after {done} bytes"),
                ),
            ));
        }
        hasher.update(&buffer[..len]);
        done += len as u64;
        progress(done);
    }
    let found = hex::encode(hasher.finalize());
    if !found.eq_ignore_ascii_case(expected) {
        return Err(WriteError::Verify {
            target: target.to_path_buf(),
            found,
            expected: expected.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn partition(dir: &Path, size: usize) -> PathBuf {
        let path = dir.join("root-b");
        std::fs::write(&path, vec![0xeeu8; size]).unwrap();
        path
    }

    fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn the_image_is_written_exactly_and_the_rest_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), CHUNK_BYTES * 3);
        let bytes = image(CHUNK_BYTES * 2 + 12345);
        let seen = AtomicU64::new(0);
        write_root(&mut &bytes[..], &target, bytes.len() as u64, &|n| {
            seen.store(n, Ordering::Relaxed)
        })
        .unwrap();
        assert_eq!(seen.load(Ordering::Relaxed), bytes.len() as u64);
        let disk = std::fs::read(&target).unwrap();
        assert_eq!(disk.len(), CHUNK_BYTES * 3);
        assert_eq!(&disk[..bytes.len()], &bytes[..]);
        assert!(disk[bytes.len()..].iter().all(|b| *b == 0xee));
        let sha = hex::encode(Sha256::digest(&bytes));
        verify_root(&target, bytes.len() as u64, &sha, &|_| {}).unwrap();
    }

    #[test]
    fn an_image_larger_than_the_partition_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), 1000);
        let bytes = image(1001);
        let err = write_root(&mut &bytes[..], &target, 1001, &|_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the root image (1001 bytes) does not fit in {} (1000 bytes)",
                target.display()
            )
        );
        assert_eq!(std::fs::read(&target).unwrap(), vec![0xeeu8; 1000]);
    }

    #[test]
    fn a_short_or_failing_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), 10_000);
        let bytes = image(500);
        let err = write_root(&mut &bytes[..], &target, 600, &|_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the root image ended after 500 of 600 bytes"
        );

        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "root: sha256 mismatch",
                ))
            }
        }
        let err = write_root(&mut Failing, &target, 600, &|_| {}).unwrap_err();
        assert_eq!(err.to_string(), "root: sha256 mismatch");
    }

    #[test]
    fn a_source_longer_than_announced_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), 10_000);
        let bytes = image(700);
        let err = write_root(&mut &bytes[..], &target, 600, &|_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the root image is longer than its 600 bytes"
        );
    }

    #[test]
    fn verification_catches_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), 4096);
        let bytes = image(3000);
        write_root(&mut &bytes[..], &target, 3000, &|_| {}).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        let mut disk = std::fs::read(&target).unwrap();
        disk[1500] ^= 1;
        std::fs::write(&target, &disk).unwrap();
        let err = verify_root(&target, 3000, &sha, &|_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("the disk did not keep what was written"),
            "{err}"
        );
    }
}
