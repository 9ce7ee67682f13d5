//! The "newc" cpio format the Linux kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst), written from a [`FileTree`]:
//! entries in path order, uid and gid 0, one fixed mtime, inode numbers counted from 1.

use std::io::Write;

use crate::tree::{FileTree, Node};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

/// Writes one newc header, the NUL-terminated name and the data, each padded to 4 bytes.
fn write_entry<W: Write>(
    out: &mut W,
    ino: u32,
    mode: u32,
    mtime: u32,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let namesize = name.len() + 1;
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let header = format!(
        "{MAGIC}{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
         {devmajor:08x}{devminor:08x}{rdevmajor:08x}{rdevminor:08x}{namesize:08x}{check:08x}",
        uid = 0,
        gid = 0,
        size = data.len(),
        devmajor = 0,
        devminor = 0,
        rdevmajor = 0,
        rdevminor = 0,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&[0; 3][..padding(header.len() + namesize)])?;
    out.write_all(data)?;
    out.write_all(&[0; 3][..padding(data.len())])?;
    Ok(())
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes `tree` as a newc archive with every entry's mtime set to `mtime`.
pub fn write_newc<W: Write>(tree: &FileTree, mtime: u32, out: &mut W) -> std::io::Result<()> {
    let mut ino = 0;
    for (path, node) in tree.iter() {
        ino += 1;
        match node {
            Node::Dir { mode } => write_entry(out, ino, 0o040000 | mode, mtime, path, &[])?,
            Node::File { mode, data } => write_entry(out, ino, 0o100000 | mode, mtime, path, data)?,
            Node::Symlink { target } => {
                write_entry(out, ino, 0o120777, mtime, path, target.as_bytes())?
            }
        }
    }
    write_entry(out, 0, 0, 0, TRAILER, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_bytes_of_a_directory_a_file_and_the_trailer() {
        let mut tree = FileTree::new();
        tree.file("d/f", 0o644, b"hello".to_vec()).unwrap();
        let mut out = Vec::new();
        write_newc(&tree, 0x5f5e_1000, &mut out).unwrap();

        let dir = "070701\
                   00000001000041ed000000000000000000000002\
                   5f5e1000000000000000000000000000\
                   000000000000000000000002\
                   00000000d\0";
        // 110-byte header + "d\0" = 112: already aligned.
        let file = "070701\
                    00000002000081a4000000000000000000000001\
                    5f5e1000000000050000000000000000\
                    000000000000000000000004\
                    00000000d/f\0\0\0hello\0\0\0";
        // 110 + "d/f\0" = 114: 2 bytes of padding; 5 bytes of data: 3 bytes of padding.
        let trailer = "070701\
                       0000000000000000000000000000000000000001\
                       00000000000000000000000000000000\
                       00000000000000000000000b\
                       00000000TRAILER!!!\0\0\0\0";
        let expected = format!("{dir}{file}{trailer}");
        assert_eq!(String::from_utf8_lossy(&out), expected);
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn symlinks_store_their_target_as_data() {
        let mut tree = FileTree::new();
        tree.symlink("lib", "usr/lib").unwrap();
        let mut out = Vec::new();
        write_newc(&tree, 0, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("070701000000010000a1ff"), "{text}");
        assert!(text.contains("lib\0\0\0usr/lib\0"), "{text}");
    }
}
