//! The GPT layout of a ZTOS disk: an EFI system partition, two root slots (A and B) and the
//! persistent partition. Partition names are the GPT partition labels init looks for; type
//! GUIDs follow the Discoverable Partitions Specification (x86-64).

use std::fmt;

/// One of the two root slots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's letter as it appears in labels, directories and the kernel command line.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The GPT partition label of this slot's root filesystem.
    pub fn root_label(self) -> &'static str {
        match self {
            Slot::A => ROOT_A_LABEL,
            Slot::B => ROOT_B_LABEL,
        }
    }

    /// The ESP directory that holds this slot's kernel and initramfs (`/ztos-a`).
    pub fn esp_dir(self) -> String {
        format!("ztos-{}", self.letter())
    }

    /// The systemd-boot entry id of this slot (`ztos-a`; on disk `ztos-a.conf`, or
    /// `ztos-a+3.conf` while it has boot tries left to prove itself).
    pub fn entry_id(self) -> String {
        format!("ztos-{}", self.letter())
    }

    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

pub const ESP_LABEL: &str = "ztos-esp";
pub const ROOT_A_LABEL: &str = "ztos-root-a";
pub const ROOT_B_LABEL: &str = "ztos-root-b";
pub const PERM_LABEL: &str = "ztos-perm";

/// Kernel command-line key naming the booted slot (`ztos.slot=a`).
pub const CMDLINE_SLOT: &str = "ztos.slot";

/// Where the persistent partition is mounted, and ztosd's state inside it.
pub const PERM_MOUNT: &str = "/perm";
pub const ZTOSD_STATE_DIR: &str = "/perm/ztos";

/// Discoverable Partitions Specification type GUIDs.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// "Root Partition (x86-64)".
pub const ROOT_X86_64_TYPE_GUID: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
/// "Variable Data Partition" (/var); ZTOS's perm holds the same kind of data.
pub const PERM_TYPE_GUID: &str = "4d21b016-b534-45c2-a9fb-5c16e091fd2d";

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSpec {
    pub label: &'static str,
    pub type_guid: &'static str,
    /// Size in MiB in a freshly built image (perm grows to fill the disk on first boot).
    pub size_mib: u64,
}

/// The partitions of a ZTOS disk, in on-disk order.
pub const PARTITIONS: [PartitionSpec; 4] = [
    PartitionSpec {
        label: ESP_LABEL,
        type_guid: ESP_TYPE_GUID,
        size_mib: 256,
    },
    PartitionSpec {
        label: ROOT_A_LABEL,
        type_guid: ROOT_X86_64_TYPE_GUID,
        size_mib: 512,
    },
    PartitionSpec {
        label: ROOT_B_LABEL,
        type_guid: ROOT_X86_64_TYPE_GUID,
        size_mib: 512,
    },
    PartitionSpec {
        label: PERM_LABEL,
        type_guid: PERM_TYPE_GUID,
        size_mib: 128,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_their_partitions_entries_and_directories() {
        assert_eq!(Slot::A.root_label(), "ztos-root-a");
        assert_eq!(Slot::B.esp_dir(), "ztos-b");
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!(Slot::parse("b"), Some(Slot::B));
        assert_eq!(Slot::parse("c"), None);
    }

    #[test]
    fn labels_are_unique_and_roots_share_the_x86_64_root_type() {
        let mut labels: Vec<_> = PARTITIONS.iter().map(|p| p.label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), PARTITIONS.len());
        assert_eq!(PARTITIONS[1].type_guid, PARTITIONS[2].type_guid);
    }
}
