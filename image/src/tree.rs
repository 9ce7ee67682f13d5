//! An in-memory file tree (directories, files, symlinks) that the builder assembles for the
//! initramfs and the root filesystem. Paths are relative to the tree's root, `/`-separated,
//! and kept sorted, so whatever is written from a tree comes out in the same order every time.

use std::collections::BTreeMap;
use std::path::Path;

/// One node of a [`FileTree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("path {0:?} is not a relative path inside the tree")]
    BadPath(String),
    #[error("{path:?} is added twice with different content")]
    Conflict { path: String },
    #[error("{path:?} needs a parent directory, but {parent:?} is not one")]
    ParentNotDir { path: String, parent: String },
    #[error("materializing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A sorted tree of nodes keyed by relative path (`usr/bin/ztosd`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTree {
    nodes: BTreeMap<String, Node>,
}

fn normalize(path: &str) -> Result<String, TreeError> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(TreeError::BadPath(path.to_string()));
    }
    Ok(trimmed.to_string())
}

impl FileTree {
    pub fn new() -> FileTree {
        FileTree::default()
    }

    /// Adds a node and any missing parent directories (mode 0755). Adding the same node twice
    /// is fine; adding a different node at an existing path is an error.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let path = normalize(path)?;
        let mut parent = String::new();
        for component in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .expect("non-empty")
            .1
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.nodes.get(&parent) {
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir { mode: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(TreeError::ParentNotDir {
                        path,
                        parent: parent.clone(),
                    })
                }
            }
        }
        match self.nodes.get(&path) {
            Some(existing) if *existing == node => Ok(()),
            // An implicitly created directory may be given its explicit mode.
            Some(Node::Dir { .. }) if matches!(node, Node::Dir { .. }) => {
                self.nodes.insert(path, node);
                Ok(())
            }
            Some(_) => Err(TreeError::Conflict { path }),
            None => {
                self.nodes.insert(path, node);
                Ok(())
            }
        }
    }

    pub fn dir(&mut self, path: &str) -> Result<(), TreeError> {
        self.insert(path, Node::Dir { mode: 0o755 })
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), TreeError> {
        self.insert(path, Node::File { mode, data })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// Adds a node like [`FileTree::insert`], but a file or symlink already at `path` is
    /// replaced instead of being a conflict (overlays over a finished tree).
    pub fn replace(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let normalized = normalize(path)?;
        if matches!(
            self.nodes.get(&normalized),
            Some(Node::File { .. } | Node::Symlink { .. })
        ) && !matches!(node, Node::Dir { .. })
        {
            self.nodes.remove(&normalized);
        }
        self.insert(path, node)
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.trim_start_matches('/'))
    }

    /// Nodes in path order; a directory always comes before what it contains.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// Total bytes of file content whose path starts with `prefix`.
    pub fn file_bytes_under(&self, prefix: &str) -> u64 {
        self.nodes
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| match n {
                Node::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Writes the tree under `root` (which must exist), skipping paths for which `skip` is true.
    pub fn materialize(&self, root: &Path, skip: impl Fn(&str) -> bool) -> Result<(), TreeError> {
        use std::os::unix::fs::PermissionsExt;
        for (path, node) in self.iter() {
            if skip(path) {
                continue;
            }
            let target = root.join(path);
            let io = |source| TreeError::Io {
                path: target.display().to_string(),
                source,
            };
            match node {
                Node::Dir { mode } => {
                    std::fs::create_dir(&target).map_err(io)?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                        .map_err(io)?;
                }
                Node::File { mode, data } => {
                    std::fs::write(&target, data).map_err(io)?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                        .map_err(io)?;
                }
                Node::Symlink { target: link } => {
                    std::os::unix::fs::symlink(link, &target).map_err(io)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_before_children() {
        let mut tree = FileTree::new();
        tree.file("/usr/bin/ztosd", 0o755, b"x".to_vec()).unwrap();
        tree.symlink("bin", "usr/bin").unwrap();
        tree.insert("usr", Node::Dir { mode: 0o700 }).unwrap();
        let paths: Vec<&str> = tree.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["bin", "usr", "usr/bin", "usr/bin/ztosd"]);
        assert_eq!(tree.get("/usr"), Some(&Node::Dir { mode: 0o700 }));
        assert_eq!(tree.file_bytes_under("usr/"), 1);
    }

    #[test]
    fn conflicts_and_bad_paths_are_named() {
        let mut tree = FileTree::new();
        tree.file("etc/hostname", 0o644, b"a".to_vec()).unwrap();
        tree.file("etc/hostname", 0o644, b"a".to_vec()).unwrap();
        let err = tree.file("etc/hostname", 0o644, b"b".to_vec()).unwrap_err();
        assert!(err.to_string().contains("\"etc/hostname\""), "{err}");
        let err = tree.file("etc/hostname/x", 0o644, vec![]).unwrap_err();
        assert!(err.to_string().contains("etc/hostname"), "{err}");
        let err = tree.dir("a/../b").unwrap_err();
        assert!(err.to_string().contains("a/../b"), "{err}");
    }
}
