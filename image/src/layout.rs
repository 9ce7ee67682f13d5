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

/// Written by ztos-init when /perm is a tmpfs because the partition could not be mounted; it
/// holds the reason. ztosd reports it in /health, the console shows it after login.
pub const PERM_DEGRADED_FILE: &str = "/run/ztos/perm-degraded";

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

/// Bytes per logical sector; GPT LBAs in ZTOS images count 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;
/// One MiB, the alignment of every partition (and the room kept for the GPT at both ends).
pub const MIB: u64 = 1024 * 1024;

/// Where one partition of [`PARTITIONS`] lies in a freshly built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionExtent {
    pub spec: PartitionSpec,
    /// Byte offset from the start of the disk (a multiple of 1 MiB).
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl PartitionExtent {
    /// First sector of the partition.
    pub fn first_lba(&self) -> u64 {
        self.offset / SECTOR_SIZE
    }

    /// Last sector of the partition (inclusive, as GPT counts it).
    pub fn last_lba(&self) -> u64 {
        (self.offset + self.size) / SECTOR_SIZE - 1
    }
}

/// The partitions of a freshly built image with their offsets: the first starts at 1 MiB (after
/// the protective MBR and the primary GPT), each follows the previous one, and 1 MiB stays free
/// at the end for the backup GPT.
pub fn partition_extents() -> [PartitionExtent; 4] {
    let mut offset = MIB;
    PARTITIONS.map(|spec| {
        let extent = PartitionExtent {
            spec,
            offset,
            size: spec.size_mib * MIB,
        };
        offset += extent.size;
        extent
    })
}

/// Size in bytes of a freshly built image.
pub fn image_size() -> u64 {
    let last = partition_extents()[PARTITIONS.len() - 1];
    last.offset + last.size + MIB
}

/// The extent of the partition with this label in a freshly built image.
pub fn extent_of(label: &str) -> Option<PartitionExtent> {
    partition_extents()
        .into_iter()
        .find(|extent| extent.spec.label == label)
}

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

    #[test]
    fn partitions_are_mib_aligned_contiguous_and_leave_room_for_the_backup_gpt() {
        let extents = partition_extents();
        assert_eq!(extents[0].offset, MIB);
        assert_eq!(extents[0].first_lba(), 2048);
        for pair in extents.windows(2) {
            assert_eq!(pair[0].offset + pair[0].size, pair[1].offset);
            assert_eq!(pair[0].last_lba() + 1, pair[1].first_lba());
        }
        for extent in extents {
            assert_eq!(extent.offset % MIB, 0, "{}", extent.spec.label);
            assert_eq!(extent.size % MIB, 0, "{}", extent.spec.label);
        }
        // 1 + 256 + 512 + 512 + 128 + 1 MiB.
        assert_eq!(image_size(), 1410 * MIB);
        assert_eq!(extent_of(ROOT_B_LABEL).unwrap().offset, 769 * MIB);
        assert_eq!(extent_of("nope"), None);
    }
}
