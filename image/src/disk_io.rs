//! Disk-image I/O helpers: a window onto one partition of an image file (so filesystem
//! writers work on the partition in place) and a sparse copy that leaves zero blocks as holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A `[start, start + len)` window of a file, seen as a device of `len` bytes.
#[derive(Debug)]
pub struct PartitionIo<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    position: u64,
}

impl<'a> PartitionIo<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> PartitionIo<'a> {
        PartitionIo {
            file,
            start,
            len,
            position: 0,
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.position)
    }
}

impl Read for PartitionIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.remaining()) as usize;
        let read = self
            .file
            .read_at(&mut buf[..n], self.start + self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}

impl Write for PartitionIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if !buf.is_empty() && self.remaining() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("write past the end of a {}-byte partition", self.len),
            ));
        }
        let n = (buf.len() as u64).min(self.remaining()) as usize;
        let written = self.file.write_at(&buf[..n], self.start + self.position)?;
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PartitionIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= self.len => {
                self.position = t;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek to {pos:?} outside a {}-byte partition", self.len),
            )),
        }
    }
}

/// Copies all of `source` into `target` at `offset`, skipping 64 KiB blocks that are all
/// zero (the target is a fresh sparse file, so they stay holes). Returns the bytes copied.
pub fn copy_sparse(source: &mut impl Read, target: &File, offset: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut block = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let mut filled = 0;
        while filled < block.len() {
            match source.read(&mut block[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            return Ok(copied);
        }
        if block[..filled].iter().any(|&b| b != 0) {
            target.write_all_at(&block[..filled], offset + copied)?;
        }
        copied += filled as u64;
        if filled < block.len() {
            return Ok(copied);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_window_is_bounded_and_offset() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(100).unwrap();
        let mut part = PartitionIo::new(&file, 10, 20);
        part.write_all(b"abc").unwrap();
        assert!(part.seek(SeekFrom::Start(21)).is_err());
        part.seek(SeekFrom::End(-2)).unwrap();
        let err = part.write_all(b"xyz").unwrap_err();
        assert!(err.to_string().contains("20-byte partition"), "{err}");
        let mut all = Vec::new();
        (&file).read_to_end(&mut all).unwrap();
        assert_eq!(&all[10..13], b"abc");
        assert_eq!(&all[28..31], b"xy\0");
    }

    #[test]
    fn sparse_copy_copies_everything_at_the_offset() {
        let mut data = vec![0u8; 200 * 1024];
        data[70_000] = 7;
        data[199 * 1024] = 9;
        let file = tempfile::tempfile().unwrap();
        file.set_len(300 * 1024).unwrap();
        let copied = copy_sparse(&mut &data[..], &file, 4096).unwrap();
        assert_eq!(copied, data.len() as u64);
        let mut all = Vec::new();
        (&file).read_to_end(&mut all).unwrap();
        assert_eq!(&all[4096..4096 + data.len()], &data[..]);
    }
}
