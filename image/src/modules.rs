//! Kernel modules: reads `modules.dep` and `modules.builtin` of a module tree, resolves a list
//! of module names into the `.ko` files to load in dependency order (skipping built-ins), and
//! reads module files, decompressing `.ko.xz`/`.ko.zst` so the image holds plain `.ko`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules the initramfs loads to reach the root and perm filesystems on virtio, NVMe, SATA and
/// SCSI disks. `crc32c_generic` is listed because ext4 asks the crypto API for crc32c through
/// request_module, which needs a modprobe the initramfs does not have.
pub const INITRAMFS_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "ahci",
    "sd_mod",
    "squashfs",
    "crc32c_generic",
    "crc32c_intel",
    "ext4",
];

/// Modules the system stage loads for ZTOS's features, the ESP (vfat with its code pages), the
/// watchdogs and common NICs. The crypto templates MACsec asks for (`gcm(aes)`, `cmac(aes)`)
/// are listed too: the kernel would request them through modprobe, which the appliance lacks.
pub const FEATURE_MODULES: &[&str] = &[
    "vxlan",
    "8021q",
    "bridge",
    "vrf",
    "macsec",
    "wireguard",
    "tun",
    "veth",
    "dummy",
    "i6300esb",
    "iTCO_wdt",
    "softdog",
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "gcm",
    "ctr",
    "cmac",
    "ghash_clmulni_intel",
];

#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {0:?} is neither in modules.dep nor built in")]
    Unknown(String),
    #[error("modules.dep names {dependency:?} (needed by {module:?}) but has no line for it")]
    DanglingDependency { module: String, dependency: String },
    #[error("decompressing {path} with {tool}: {reason}")]
    Decompress {
        path: PathBuf,
        tool: &'static str,
        reason: String,
    },
}

/// The module name of a path: file name without `.ko*`, with `-` written as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The path a module gets in the image: always the uncompressed `.ko`.
pub fn plain_path(path: &str) -> String {
    for suffix in [".ko.xz", ".ko.zst", ".ko.gz"] {
        if let Some(stem) = path.strip_suffix(suffix) {
            return format!("{stem}.ko");
        }
    }
    path.to_string()
}

/// The dependency graph of one kernel's modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// Module path (relative to /lib/modules/<release>) -> its dependencies' paths.
    dependencies: BTreeMap<String, Vec<String>>,
    by_name: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> ModuleIndex {
        let mut index = ModuleIndex::default();
        for line in modules_dep.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let module = module.trim().to_string();
            index.by_name.insert(module_name(&module), module.clone());
            index.dependencies.insert(
                module,
                deps.split_whitespace().map(str::to_string).collect(),
            );
        }
        index.builtin = modules_builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        index
    }

    /// Reads `modules.dep` and `modules.builtin` from `/lib/modules/<release>`.
    pub fn load(modules_dir: &Path) -> Result<ModuleIndex, ModulesError> {
        let read = |name: &str| {
            let path = modules_dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ModulesError::Read { path, source })
        };
        let builtin = match read("modules.builtin") {
            Ok(text) => text,
            Err(ModulesError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                String::new()
            }
            Err(e) => return Err(e),
        };
        Ok(ModuleIndex::parse(&read("modules.dep")?, &builtin))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The module files to load for `names`, dependencies first, each once. Built-in modules
    /// are skipped; a name that is neither a module nor built in is an error.
    pub fn resolve(&self, names: &[&str]) -> Result<Vec<String>, ModulesError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let name = name.replace('-', "_");
            match self.by_name.get(&name) {
                Some(path) => self.visit(path, &mut seen, &mut order)?,
                None if self.builtin.contains(&name) => {}
                None => return Err(ModulesError::Unknown(name)),
            }
        }
        Ok(order)
    }

    fn visit(
        &self,
        path: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModulesError> {
        if !seen.insert(path.to_string()) {
            return Ok(());
        }
        let deps = self
            .dependencies
            .get(path)
            .ok_or_else(|| ModulesError::Unknown(path.into()))?;
        for dep in deps {
            if !self.dependencies.contains_key(dep) {
                return Err(ModulesError::DanglingDependency {
                    module: path.to_string(),
                    dependency: dep.clone(),
                });
            }
            self.visit(dep, seen, order)?;
        }
        order.push(path.to_string());
        Ok(())
    }
}

/// Reads a module file, decompressing `.ko.xz` and `.ko.zst` with the host's `xz`/`zstd`.
pub fn read_module(modules_dir: &Path, relative: &str) -> Result<Vec<u8>, ModulesError> {
    let path = modules_dir.join(relative);
    let tool = if relative.ends_with(".ko.xz") {
        "xz"
    } else if relative.ends_with(".ko.zst") {
        "zstd"
    } else if relative.ends_with(".ko.gz") {
        "gzip"
    } else {
        return std::fs::read(&path).map_err(|source| ModulesError::Read { path, source });
    };
    let output = std::process::Command::new(tool)
        .arg("-dc")
        .arg(&path)
        .output()
        .map_err(|e| ModulesError::Decompress {
            path: path.clone(),
            tool,
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(ModulesError::Decompress {
            path,
            tool,
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko.xz:
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko
kernel/drivers/nvme/host/nvme-core.ko:
";

    #[test]
    fn resolves_dependencies_first_once_and_skips_builtins() {
        let index = ModuleIndex::parse(DEP, "kernel/fs/squashfs/squashfs.ko\n");
        let order = index
            .resolve(&["nvme", "ext4", "squashfs", "jbd2", "virtio-blk"])
            .unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/nvme/host/nvme-core.ko",
                "kernel/drivers/nvme/host/nvme.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/drivers/block/virtio_blk.ko.xz",
            ]
        );
        // Every module comes after all of its dependencies.
        for (i, module) in order.iter().enumerate() {
            for dep in &index.dependencies[module] {
                assert!(order[..i].contains(dep), "{dep} after {module}");
            }
        }
    }

    #[test]
    fn unknown_modules_and_dangling_dependencies_are_named() {
        let index = ModuleIndex::parse(DEP, "");
        let err = index.resolve(&["macsec"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "module \"macsec\" is neither in modules.dep nor built in"
        );
        let index = ModuleIndex::parse("kernel/a.ko: kernel/b.ko\n", "");
        let err = index.resolve(&["a"]).unwrap_err();
        assert!(err.to_string().contains("\"kernel/b.ko\""), "{err}");
    }

    #[test]
    fn names_and_plain_paths() {
        assert_eq!(
            module_name("kernel/drivers/nvme/host/nvme-core.ko.zst"),
            "nvme_core"
        );
        assert_eq!(
            plain_path("kernel/x/virtio_blk.ko.xz"),
            "kernel/x/virtio_blk.ko"
        );
        assert_eq!(
            plain_path("kernel/x/virtio_blk.ko"),
            "kernel/x/virtio_blk.ko"
        );
    }
}
