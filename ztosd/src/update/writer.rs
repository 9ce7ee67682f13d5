//! Writes a root image into the inactive slot's root partition and verifies it, in one of
//! two ways:
//!
//! ```text
//!  in memory (the root fits the memory budget; the usual case):
//!  artifact reader ──▶ RootInMemory (size and sha256 checked at its end; nothing written yet)
//!      ──▶ write_root_from_memory: 4 MiB O_DIRECT writes from an aligned buffer ──▶ partition
//!          (the unaligned tail, if any, buffered), fdatasync once
//!
//!  streamed (larger roots):
//!  artifact reader ──4 MiB buffers──▶ writer thread ──write──▶ partition (page cache)
//!  (hashes, checks size)  ◀──empty buffers──┘           fdatasync once
//!
//!  then, either way: drop the cache, re-read + sha256 == manifest (verify_root)
//! ```
//!
//! Receiving a root whole before writing it keeps a truncated or corrupted root from ever
//! touching the partition, and makes the write run at the disk's speed instead of the
//! network's (TLS and hashing). Streaming overlaps reading (network, hashing) and writing
//! through buffers in flight; there is no fsync per chunk. The re-read goes to the device,
//! not the page cache: the written range is dropped from the cache after the sync.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

/// The size of one write (and one read of the verification pass).
pub const CHUNK_BYTES: usize = 4 << 20;

/// Buffers in flight between the reader and the writer thread.
const BUFFERS: usize = 3;

/// Alignment of direct writes: buffer address, file offset and length. 4096 covers disks with
/// 512- and 4096-byte logical blocks.
pub const DIRECT_ALIGN: usize = 4096;

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
    /// The memory for receiving the root whole could not be had.
    #[error("cannot hold the root image ({size} bytes) in memory: {reason}")]
    Memory {
        size: u64,
        reason: std::collections::TryReserveError,
    },
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
            outcome = expect_end(source, size);
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

/// A root image received whole, before any byte of it is written: its bytes sit at an
/// address aligned for direct I/O.
pub struct RootInMemory {
    buffer: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for RootInMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootInMemory")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl RootInMemory {
    /// Sets aside memory for a root image of `size` bytes; memory that cannot be had is an
    /// error ([`WriteError::Memory`]), not an abort, and nothing has been read yet.
    pub fn reserve(size: u64) -> Result<RootInMemory, WriteError> {
        // A size beyond the address space saturates, and the reservation refuses it.
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        let mut buffer = Vec::new();
        buffer
            .try_reserve_exact(len.saturating_add(DIRECT_ALIGN))
            .map_err(|reason| WriteError::Memory { size, reason })?;
        buffer.resize(len + DIRECT_ALIGN, 0);
        let misalignment = buffer.as_ptr() as usize % DIRECT_ALIGN;
        let start = (DIRECT_ALIGN - misalignment) % DIRECT_ALIGN;
        Ok(RootInMemory { buffer, start, len })
    }

    /// Reads exactly the reserved size from `source`, then makes sure the source ends there
    /// (the bundle's artifact reader reports a size or sha256 mismatch on the read that
    /// completes the artifact). Calls `progress` with the bytes received so far after each
    /// 4 MiB.
    pub fn receive(
        &mut self,
        source: &mut dyn Read,
        progress: &dyn Fn(u64),
    ) -> Result<(), WriteError> {
        let (start, len) = (self.start, self.len);
        let image = &mut self.buffer[start..start + len];
        let mut received = 0usize;
        while received < len {
            let want = CHUNK_BYTES.min(len - received);
            let got =
                fill(source, &mut image[received..received + want]).map_err(WriteError::Source)?;
            received += got;
            if got < want {
                return Err(WriteError::Short {
                    written: received as u64,
                    expected: len as u64,
                });
            }
            progress(received as u64);
        }
        expect_end(source, len as u64)
    }

    /// The image's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[self.start..self.start + self.len]
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One more read past the artifact's end: it must give nothing (and lets the artifact reader
/// report a hash mismatch, if it has not yet).
fn expect_end(source: &mut dyn Read, size: u64) -> Result<(), WriteError> {
    let mut probe = [0u8; 1];
    loop {
        return match source.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(WriteError::Source(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the root image is longer than its {size} bytes"),
            ))),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => Err(WriteError::Source(err)),
        };
    }
}

/// Writes `image` to the start of `target` at the disk's speed, then syncs. The aligned bulk
/// goes in [`CHUNK_BYTES`] writes with O_DIRECT (no copy into the page cache, several MiB per
/// request); an unaligned tail (under 4 KiB) goes through the page cache. Where the target
/// refuses O_DIRECT (tmpfs, some filesystems under the tests), everything is written
/// buffered. One fdatasync at the end either way. Calls `progress` with the bytes written.
pub fn write_root_from_memory(
    image: &RootInMemory,
    target: &Path,
    progress: &dyn Fn(u64),
) -> Result<(), WriteError> {
    let bytes = image.bytes();
    let size = bytes.len() as u64;
    let capacity = capacity(target)?;
    if size > capacity {
        return Err(WriteError::DoesNotFit {
            target: target.to_path_buf(),
            size,
            capacity,
        });
    }
    let aligned = bytes.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    let mut written = 0usize;
    if aligned > 0 {
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
            .open(target);
        match direct {
            Ok(file) => {
                written = write_direct(&file, &bytes[..aligned], target, progress)?;
            }
            Err(err) if err.raw_os_error() == Some(nix::libc::EINVAL) => {}
            Err(err) => return Err(WriteError::io("opening", target, err)),
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(|e| WriteError::io("opening", target, e))?;
    while written < bytes.len() {
        let end = bytes.len().min(written + CHUNK_BYTES);
        file.write_all_at(&bytes[written..end], written as u64)
            .map_err(|e| WriteError::io("writing", target, e))?;
        written = end;
        progress(written as u64);
    }
    // For a block device (or a file), one fdatasync covers every descriptor's writes: the
    // page cache's dirty pages and the disk's volatile cache, which holds the direct writes.
    file.sync_data()
        .map_err(|e| WriteError::io("syncing", target, e))?;
    Ok(())
}

/// The direct writes of [`write_root_from_memory`]; returns how many bytes went out. Stops
/// early (returning what was written, 0 at the first write) when the target refuses direct
/// I/O with EINVAL, so the rest is written buffered.
fn write_direct(
    file: &File,
    aligned: &[u8],
    target: &Path,
    progress: &dyn Fn(u64),
) -> Result<usize, WriteError> {
    let mut written = 0usize;
    while written < aligned.len() {
        let end = aligned.len().min(written + CHUNK_BYTES);
        match file.write_at(&aligned[written..end], written as u64) {
            Ok(0) => {
                return Err(WriteError::io(
                    "writing",
                    target,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "the device took no bytes"),
                ))
            }
            // A partial direct write ends on a block boundary of the device; go on from
            // there only if it is still aligned for the next request.
            Ok(n) => {
                written += n;
                if written % DIRECT_ALIGN != 0 {
                    return Err(WriteError::io(
                        "writing",
                        target,
                        std::io::Error::other(format!(
                            "a direct write ended at byte {written}, not on a {DIRECT_ALIGN}-byte boundary"
                        )),
                    ));
                }
                progress(written as u64);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(nix::libc::EINVAL) && written == 0 => {
                return Ok(0)
            }
            Err(err) => return Err(WriteError::io("writing", target, err)),
        }
    }
    Ok(written)
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

    fn receive(bytes: &[u8], size: u64) -> Result<RootInMemory, WriteError> {
        let mut image = RootInMemory::reserve(size)?;
        image.receive(&mut &bytes[..], &|_| {})?;
        Ok(image)
    }

    #[test]
    fn a_root_in_memory_is_aligned_and_written_exactly_in_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        // Aligned bulk over several chunks plus an unaligned tail; an image smaller than one
        // block (the tail alone); an exactly aligned one.
        for len in [
            CHUNK_BYTES * 2 + 3 * DIRECT_ALIGN + 123,
            1000,
            DIRECT_ALIGN * 5,
        ] {
            let target = partition(dir.path(), CHUNK_BYTES * 3);
            let bytes = image(len);
            let seen = AtomicU64::new(0);
            let mut root = RootInMemory::reserve(len as u64).unwrap();
            root.receive(&mut &bytes[..], &|n| seen.store(n, Ordering::Relaxed))
                .unwrap();
            assert_eq!(seen.load(Ordering::Relaxed), len as u64);
            assert_eq!(root.bytes().as_ptr() as usize % DIRECT_ALIGN, 0);
            assert_eq!(root.bytes(), &bytes[..]);
            let written = AtomicU64::new(0);
            write_root_from_memory(&root, &target, &|n| written.store(n, Ordering::Relaxed))
                .unwrap();
            assert_eq!(written.load(Ordering::Relaxed), len as u64);
            let disk = std::fs::read(&target).unwrap();
            assert_eq!(disk.len(), CHUNK_BYTES * 3, "{len}");
            assert_eq!(&disk[..len], &bytes[..], "{len}");
            assert!(disk[len..].iter().all(|b| *b == 0xee), "{len}");
            let sha = hex::encode(Sha256::digest(&bytes));
            verify_root(&target, len as u64, &sha, &|_| {}).unwrap();
        }
    }

    #[test]
    fn receiving_a_short_long_or_failing_root_is_an_error() {
        let bytes = image(500);
        assert_eq!(
            receive(&bytes, 600).unwrap_err().to_string(),
            "the root image ended after 500 of 600 bytes"
        );
        assert_eq!(
            receive(&bytes, 400).unwrap_err().to_string(),
            "the root image is longer than its 400 bytes"
        );
        assert_eq!(receive(&bytes, 500).unwrap().bytes(), &bytes[..]);
        let mut root = RootInMemory::reserve(10).unwrap();
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "root image sha256 mismatch",
                ))
            }
        }
        assert_eq!(
            root.receive(&mut Failing, &|_| {}).unwrap_err().to_string(),
            "root image sha256 mismatch"
        );
    }

    #[test]
    fn memory_that_cannot_be_had_is_an_error_not_an_abort() {
        let err = RootInMemory::reserve(u64::MAX).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot hold the root image ({} bytes) in memory",
                u64::MAX
            )),
            "{err}"
        );
    }

    #[test]
    fn a_root_in_memory_larger_than_the_partition_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let target = partition(dir.path(), 8192);
        let bytes = image(8193);
        let root = receive(&bytes, 8193).unwrap();
        let err = write_root_from_memory(&root, &target, &|_| {}).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), vec![0xeeu8; 8192]);
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
