//! Reads a ZTOS disk image back: the partition table, what each partition holds (detected by
//! filesystem magic), the ESP's loader default, boot entries and slot directories, and each
//! slot's version as its boot entry names it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::bootloader::{loader_default, BootEntry};
use crate::disk_io::PartitionIo;
use crate::esp::{read_esp, EspError};
use crate::gpt::{Gpt, GptError};
use crate::layout::{Slot, SlotLayout, ESP_LABEL, SECTOR_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("opening {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error(transparent)]
    Esp(#[from] EspError),
    #[error("the image has no {0} partition")]
    NoEsp(&'static str),
}

/// What a partition's first bytes say it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Squashfs { bytes_used: u64 },
    Ext4 { label: String },
    Fat32,
    Empty,
    Unknown,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Squashfs { bytes_used } => write!(f, "squashfs, {}", human(*bytes_used)),
            Content::Ext4 { label } => write!(f, "ext4 {label:?}"),
            Content::Fat32 => f.write_str("FAT32"),
            Content::Empty => f.write_str("empty"),
            Content::Unknown => f.write_str("unknown"),
        }
    }
}

/// Detects the filesystem in the first 4 KiB of a partition.
pub fn detect(head: &[u8]) -> Content {
    if head.len() >= 48 && &head[0..4] == b"hsqs" {
        let bytes_used = u64::from_le_bytes(head[40..48].try_into().expect("8 bytes"));
        return Content::Squashfs { bytes_used };
    }
    // The ext4 superblock starts at byte 1024; its magic 0xef53 sits at offset 56.
    if head.len() >= 1024 + 136 && head[1024 + 56..1024 + 58] == [0x53, 0xef] {
        let raw = &head[1024 + 120..1024 + 136];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        return Content::Ext4 {
            label: String::from_utf8_lossy(&raw[..end]).into_owned(),
        };
    }
    if head.len() >= 90 && &head[82..90] == b"FAT32   " {
        return Content::Fat32;
    }
    if head.iter().all(|&b| b == 0) {
        return Content::Empty;
    }
    Content::Unknown
}

fn human(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub label: String,
    pub type_guid: String,
    pub unique_guid: String,
    pub offset: u64,
    pub size: u64,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub struct SlotReport {
    pub slot: Slot,
    /// The entry's file name (`ztos-a.conf`, or `ztos-b+2-1.conf` while on trial).
    pub entry_file: Option<String>,
    pub version: Option<String>,
    /// Files in the slot's ESP directory, with sizes.
    pub files: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct ImageReport {
    pub disk_guid: String,
    pub size: u64,
    pub partitions: Vec<PartitionReport>,
    pub loader_default: Option<String>,
    pub entries: Vec<(String, BootEntry)>,
    pub slots: Vec<SlotReport>,
}

/// Reads the image at `path`.
pub fn inspect(path: &Path) -> Result<ImageReport, InspectError> {
    let open_error = |source| InspectError::Open {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let size = file.metadata().map_err(open_error)?.len();
    let gpt = Gpt::read_from(&mut &file, size / SECTOR_SIZE)?;
    let mut partitions = Vec::new();
    for p in &gpt.partitions {
        let mut head = vec![0u8; 4096.min(p.size_bytes() as usize)];
        PartitionIo::new(&file, p.offset_bytes(), p.size_bytes())
            .read_exact(&mut head)
            .map_err(GptError::Io)?;
        partitions.push(PartitionReport {
            label: p.name.clone(),
            type_guid: p.type_guid.to_string(),
            unique_guid: p.unique_guid.to_string(),
            offset: p.offset_bytes(),
            size: p.size_bytes(),
            content: detect(&head),
        });
    }
    let esp = gpt
        .partitions
        .iter()
        .find(|p| p.name == ESP_LABEL)
        .ok_or(InspectError::NoEsp(ESP_LABEL))?;
    let files = read_esp(PartitionIo::new(
        &file,
        esp.offset_bytes(),
        esp.size_bytes(),
    ))?;
    let text = |name: &str| {
        files
            .get(name)
            .map(|d| String::from_utf8_lossy(d).into_owned())
    };
    let loader_default = text("loader/loader.conf")
        .as_deref()
        .and_then(loader_default);
    let entries: Vec<(String, BootEntry)> = files
        .iter()
        .filter_map(|(name, data)| {
            let file_name = name.strip_prefix("loader/entries/")?;
            Some((
                file_name.to_string(),
                BootEntry::parse(&String::from_utf8_lossy(data)),
            ))
        })
        .collect();
    let slots = [Slot::A, Slot::B]
        .into_iter()
        .map(|slot| {
            let entry = entries.iter().find(|(_, e)| e.slot() == Some(slot));
            let prefix = format!("{}/", slot.esp_dir());
            SlotReport {
                slot,
                entry_file: entry.map(|(name, _)| name.clone()),
                version: entry.and_then(|(_, e)| e.version.clone()),
                files: files
                    .iter()
                    .filter_map(|(name, data)| {
                        Some((name.strip_prefix(&prefix)?.to_string(), data.len() as u64))
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(ImageReport {
        disk_guid: gpt.disk_guid.to_string(),
        size,
        partitions,
        loader_default,
        entries,
        slots,
    })
}

impl fmt::Display for ImageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "disk {} ({}, GUID {})",
            human(self.size),
            self.size,
            self.disk_guid
        )?;
        writeln!(f, "partitions:")?;
        for (i, p) in self.partitions.iter().enumerate() {
            writeln!(
                f,
                "  {} {:<12} offset {:>6} MiB  size {:>6} MiB  type {}  {}",
                i + 1,
                p.label,
                p.offset / (1024 * 1024),
                p.size / (1024 * 1024),
                p.type_guid,
                p.content
            )?;
        }
        writeln!(
            f,
            "loader default: {}",
            self.loader_default.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "boot entries:")?;
        for (name, entry) in &self.entries {
            writeln!(f, "  {name}: {:?}", entry.title)?;
            writeln!(
                f,
                "    linux {}  initrd {}",
                entry.linux,
                entry.initrd.join(" ")
            )?;
            writeln!(f, "    options {}", entry.options)?;
        }
        writeln!(f, "slots:")?;
        for slot in &self.slots {
            let files: Vec<String> = slot
                .files
                .iter()
                .map(|(name, size)| format!("{name} {}", human(*size)))
                .collect();
            writeln!(
                f,
                "  {}: version {}, entry {}, files [{}]",
                slot.slot,
                slot.version.as_deref().unwrap_or("(none)"),
                slot.entry_file.as_deref().unwrap_or("(none)"),
                files.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_filesystems_by_magic() {
        let mut head = vec![0u8; 4096];
        assert_eq!(detect(&head), Content::Empty);
        head[0..4].copy_from_slice(b"hsqs");
        head[40..48].copy_from_slice(&1_048_576u64.to_le_bytes());
        assert_eq!(
            detect(&head),
            Content::Squashfs {
                bytes_used: 1 << 20
            }
        );
        let mut head = vec![0u8; 4096];
        head[1024 + 56] = 0x53;
        head[1024 + 57] = 0xef;
        head[1024 + 120..1024 + 129].copy_from_slice(b"ztos-perm");
        assert_eq!(
            detect(&head),
            Content::Ext4 {
                label: "ztos-perm".into()
            }
        );
        let mut head = vec![0u8; 4096];
        head[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(detect(&head), Content::Fat32);
        head[0] = 1;
        head[82] = 0;
        assert_eq!(detect(&head), Content::Unknown);
    }
}
