//! The GUID partition table (UEFI specification, chapter 5): a protective MBR, the primary
//! header and entry array at the start of the disk and their backup at the end. Encoding and
//! decoding are pure; [`Gpt::write_to`] and [`Gpt::read_from`] do the I/O.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::guid::Guid;
use crate::layout::{MIB, SECTOR_SIZE};

/// Number of entries in the partition entry array (the minimum the specification allows).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors the entry array occupies: 128 * 128 / 512.
pub const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE) as u64 / SECTOR_SIZE;
const HEADER_SIZE: u32 = 92;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION_1_0: u32 = 0x0001_0000;

/// One partition as the GPT records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    /// The partition label (at most 36 UTF-16 code units).
    pub name: String,
}

impl GptPartition {
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR_SIZE
    }

    pub fn offset_bytes(&self) -> u64 {
        self.first_lba * SECTOR_SIZE
    }
}

/// A whole partition table for a disk of `total_sectors` sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    pub total_sectors: u64,
    pub partitions: Vec<GptPartition>,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("partition name {0:?} is longer than 36 UTF-16 code units")]
    NameTooLong(String),
    #[error("partition {name:?} (sectors {first}..={last}) lies outside the usable sectors {usable_first}..={usable_last}")]
    OutOfRange {
        name: String,
        first: u64,
        last: u64,
        usable_first: u64,
        usable_last: u64,
    },
    #[error("{count} partitions do not fit in a table of {ENTRY_COUNT} entries")]
    TooManyPartitions { count: usize },
    #[error("no GPT signature at sector 1 (found {0:?})")]
    NoSignature(String),
    #[error("GPT header CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("GPT entry array CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    EntriesCrc { stored: u32, computed: u32 },
    #[error("unsupported GPT entry layout: {count} entries of {size} bytes")]
    EntryLayout { count: u32, size: u32 },
    #[error("GPT header at sector {found_at} says it is at sector {claims}")]
    MisplacedHeader { found_at: u64, claims: u64 },
    #[error("neither GPT is readable: primary: {primary}; backup at the last sector: {backup}")]
    NoValidTable {
        primary: Box<GptError>,
        backup: Box<GptError>,
    },
    #[error("no partition labelled {0:?} in the partition table")]
    NoSuchPartition(String),
    #[error("a disk of {0} sectors is too small for a GPT")]
    DiskTooSmall(u64),
    #[error("reading or writing the partition table: {0}")]
    Io(#[from] std::io::Error),
}

/// A table as read from a disk by [`Gpt::read_either`]: which copy answered and where that
/// copy's header says the disk's usable area and the other copy are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOnDisk {
    pub gpt: Gpt,
    /// The primary was damaged (a power cut while it was written, say) and the backup at the
    /// disk's last sector answered.
    pub from_backup: bool,
    /// The header's `AlternateLBA`: where the other copy is (for a primary written on a
    /// smaller disk, its old end).
    pub alternate_lba: u64,
    /// The header's `LastUsableLBA`.
    pub last_usable_lba: u64,
}

/// What [`grow_partition_to_end`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrowOutcome {
    /// The partition already ends at the last aligned sector and both tables describe this
    /// disk: nothing was written.
    AlreadyFull { last_lba: u64 },
    /// The tables were rewritten.
    Grown {
        old_last_lba: u64,
        new_last_lba: u64,
        /// The backup table moved to the disk's real end (the disk is larger than the image
        /// was, or the primary was damaged).
        backup_moved: bool,
    },
}

/// Partition ends are kept on 1 MiB boundaries, like the builder lays them out.
const ALIGN_SECTORS: u64 = MIB / SECTOR_SIZE;

impl Gpt {
    /// First sector partitions may use: after the MBR, the header and the entry array.
    pub fn first_usable_lba(&self) -> u64 {
        2 + ENTRY_ARRAY_SECTORS
    }

    /// Last sector partitions may use: before the backup entry array and header.
    pub fn last_usable_lba(&self) -> u64 {
        self.total_sectors - 2 - ENTRY_ARRAY_SECTORS
    }

    /// Checks what the encoder relies on: names that fit, partitions inside the usable area.
    pub fn validate(&self) -> Result<(), GptError> {
        if self.partitions.len() > ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions {
                count: self.partitions.len(),
            });
        }
        for p in &self.partitions {
            if p.name.encode_utf16().count() > 36 {
                return Err(GptError::NameTooLong(p.name.clone()));
            }
            if p.first_lba < self.first_usable_lba()
                || p.last_lba > self.last_usable_lba()
                || p.last_lba < p.first_lba
            {
                return Err(GptError::OutOfRange {
                    name: p.name.clone(),
                    first: p.first_lba,
                    last: p.last_lba,
                    usable_first: self.first_usable_lba(),
                    usable_last: self.last_usable_lba(),
                });
            }
        }
        Ok(())
    }

    /// The protective MBR: one partition of type 0xEE covering the disk (or 2 TiB of it).
    pub fn protective_mbr(&self) -> [u8; 512] {
        let mut mbr = [0u8; 512];
        let entry = &mut mbr[446..462];
        entry[0] = 0x00; // not bootable
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        entry[4] = 0xee; // GPT protective
        entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = (self.total_sectors - 1).min(u32::MAX as u64) as u32;
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr
    }

    /// The partition entry array (shared by the primary and the backup table).
    pub fn entry_array(&self) -> Vec<u8> {
        let mut array = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut array[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_mixed_endian());
            e[16..32].copy_from_slice(&p.unique_guid.to_mixed_endian());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
            }
        }
        array
    }

    /// The primary (`backup == false`) or backup header sector.
    pub fn header(&self, backup: bool) -> [u8; 512] {
        let last = self.total_sectors - 1;
        let (my_lba, alternate_lba, entries_lba) = if backup {
            (last, 1, last - ENTRY_ARRAY_SECTORS)
        } else {
            (1, last, 2)
        };
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION_1_0.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20: header CRC32, computed below over the header with this field zero.
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable_lba().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_mixed_endian());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&self.entry_array()).to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Writes the protective MBR, the primary table and the backup table.
    pub fn write_to<W: Write + Seek>(&self, disk: &mut W) -> Result<(), GptError> {
        self.validate()?;
        let entries = self.entry_array();
        let last = self.total_sectors - 1;
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(&self.protective_mbr())?;
        disk.write_all(&self.header(false))?;
        disk.write_all(&entries)?;
        disk.seek(SeekFrom::Start((last - ENTRY_ARRAY_SECTORS) * SECTOR_SIZE))?;
        disk.write_all(&entries)?;
        disk.write_all(&self.header(true))?;
        Ok(())
    }

    /// Reads and checks the primary table of a disk of `total_sectors` sectors.
    pub fn read_from<R: Read + Seek>(disk: &mut R, total_sectors: u64) -> Result<Gpt, GptError> {
        let mut h = [0u8; 512];
        disk.seek(SeekFrom::Start(SECTOR_SIZE))?;
        disk.read_exact(&mut h)?;
        Gpt::decode_header(&h, total_sectors, |lba, len| {
            let mut entries = vec![0u8; len];
            disk.seek(SeekFrom::Start(lba * SECTOR_SIZE))?;
            disk.read_exact(&mut entries)?;
            Ok(entries)
        })
    }

    /// Reads the primary table, or the backup at the disk's last sector when the primary is
    /// unreadable: what the kernel and every partitioning tool do, and what makes
    /// [`grow_partition_to_end`] power-cut safe.
    pub fn read_either<R: Read + Seek>(
        disk: &mut R,
        total_sectors: u64,
    ) -> Result<TableOnDisk, GptError> {
        if total_sectors < 3 + 2 * ENTRY_ARRAY_SECTORS {
            return Err(GptError::DiskTooSmall(total_sectors));
        }
        let primary = Self::read_copy(disk, 1, total_sectors);
        match primary {
            Ok(table) => Ok(table),
            Err(primary) => match Self::read_copy(disk, total_sectors - 1, total_sectors) {
                Ok(mut table) => {
                    table.from_backup = true;
                    Ok(table)
                }
                Err(backup) => Err(GptError::NoValidTable {
                    primary: Box::new(primary),
                    backup: Box::new(backup),
                }),
            },
        }
    }

    fn read_copy<R: Read + Seek>(
        disk: &mut R,
        lba: u64,
        total_sectors: u64,
    ) -> Result<TableOnDisk, GptError> {
        let mut h = [0u8; 512];
        disk.seek(SeekFrom::Start(lba * SECTOR_SIZE))?;
        disk.read_exact(&mut h)?;
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let gpt = Gpt::decode_header(&h, total_sectors, |entries_lba, len| {
            let mut entries = vec![0u8; len];
            disk.seek(SeekFrom::Start(entries_lba * SECTOR_SIZE))?;
            disk.read_exact(&mut entries)?;
            Ok(entries)
        })?;
        let claims = u64_at(24);
        if claims != lba {
            return Err(GptError::MisplacedHeader {
                found_at: lba,
                claims,
            });
        }
        Ok(TableOnDisk {
            gpt,
            from_backup: false,
            alternate_lba: u64_at(32),
            last_usable_lba: u64_at(48),
        })
    }

    fn decode_header(
        h: &[u8; 512],
        total_sectors: u64,
        mut read_entries: impl FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
    ) -> Result<Gpt, GptError> {
        if &h[0..8] != SIGNATURE {
            return Err(GptError::NoSignature(
                String::from_utf8_lossy(&h[0..8]).into_owned(),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let header_size = u32_at(12).clamp(HEADER_SIZE, 512) as usize;
        let stored = u32_at(16);
        let mut zeroed = *h;
        zeroed[16..20].fill(0);
        let computed = crc32fast::hash(&zeroed[..header_size]);
        if stored != computed {
            return Err(GptError::HeaderCrc { stored, computed });
        }
        let (count, size) = (u32_at(80), u32_at(84));
        if size < 128 || count > 1024 {
            return Err(GptError::EntryLayout { count, size });
        }
        let entries = read_entries(u64_at(72), (count * size) as usize)?;
        let computed = crc32fast::hash(&entries);
        if u32_at(88) != computed {
            return Err(GptError::EntriesCrc {
                stored: u32_at(88),
                computed,
            });
        }
        let disk_guid =
            Guid::from_mixed_endian(h[56..72].try_into().expect("16 bytes of disk guid"));
        let mut partitions = Vec::new();
        for e in entries.chunks(size as usize) {
            let type_guid = Guid::from_mixed_endian(e[0..16].try_into().expect("16 bytes"));
            if type_guid == Guid::ZERO {
                continue;
            }
            let units: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            partitions.push(GptPartition {
                type_guid,
                unique_guid: Guid::from_mixed_endian(e[16..32].try_into().expect("16 bytes")),
                first_lba: u64::from_le_bytes(e[32..40].try_into().expect("8 bytes")),
                last_lba: u64::from_le_bytes(e[40..48].try_into().expect("8 bytes")),
                attributes: u64::from_le_bytes(e[48..56].try_into().expect("8 bytes")),
                name: String::from_utf16_lossy(&units),
            });
        }
        Ok(Gpt {
            disk_guid,
            total_sectors,
            partitions,
        })
    }
}

/// Grows the partition labelled `label` to the end of the usable space (or up to the next
/// partition), its end on a 1 MiB boundary, and moves the backup table to the disk's real end
/// when the disk is larger than the tables say (an image written to a bigger disk). The
/// partition never shrinks and its start never moves; its data is untouched.
///
/// Idempotent: a disk whose tables already say so is not written. Power-cut safe: the write
/// order keeps one valid table at every moment, given that [`Gpt::read_either`] (like the
/// kernel) falls back to the backup at the last sector:
///
/// 1. the new backup entries, then its header, at the disk's end (`barrier`): until here the
///    old primary is intact and valid;
/// 2. the new primary entries (from now until its header is written, the primary's CRC fails
///    and the new backup answers), the protective MBR, then the primary header (`barrier`);
/// 3. the old backup header, when it was elsewhere (now inside the grown partition or free
///    space), is zeroed so no stale table is found there (`barrier`).
///
/// `barrier` must make what was written durable (`File::sync_data`); it runs after each step.
pub fn grow_partition_to_end<D: Read + Write + Seek>(
    disk: &mut D,
    total_sectors: u64,
    label: &str,
    mut barrier: impl FnMut(&mut D) -> std::io::Result<()>,
) -> Result<GrowOutcome, GptError> {
    let table = Gpt::read_either(disk, total_sectors)?;
    let mut grown = table.gpt.clone();
    grown.total_sectors = total_sectors;
    let index = grown
        .partitions
        .iter()
        .position(|p| p.name == label)
        .ok_or_else(|| GptError::NoSuchPartition(label.to_string()))?;
    let old_last_lba = grown.partitions[index].last_lba;
    let first_lba = grown.partitions[index].first_lba;
    let limit = grown
        .partitions
        .iter()
        .filter(|p| p.first_lba > old_last_lba)
        .map(|p| p.first_lba - 1)
        .min()
        .unwrap_or(grown.last_usable_lba())
        .min(grown.last_usable_lba());
    let aligned_last = ((limit + 1) / ALIGN_SECTORS * ALIGN_SECTORS).saturating_sub(1);
    let new_last_lba = aligned_last.max(old_last_lba);
    grown.partitions[index].last_lba = new_last_lba;
    debug_assert!(first_lba <= new_last_lba);

    let last = total_sectors - 1;
    let describes_this_disk = !table.from_backup
        && table.alternate_lba == last
        && table.last_usable_lba == grown.last_usable_lba();
    let backup_matches = describes_this_disk
        && Gpt::read_copy(disk, last, total_sectors).is_ok_and(|backup| backup.gpt == table.gpt);
    if new_last_lba == old_last_lba && backup_matches {
        return Ok(GrowOutcome::AlreadyFull {
            last_lba: old_last_lba,
        });
    }
    grown.validate()?;
    let entries = grown.entry_array();

    disk.seek(SeekFrom::Start((last - ENTRY_ARRAY_SECTORS) * SECTOR_SIZE))?;
    disk.write_all(&entries)?;
    disk.write_all(&grown.header(true))?;
    barrier(disk)?;

    disk.seek(SeekFrom::Start(2 * SECTOR_SIZE))?;
    disk.write_all(&entries)?;
    // The MBR goes before the primary header: once that header is valid, a rerun finds
    // nothing to do, so everything else must already be written.
    disk.seek(SeekFrom::Start(0))?;
    let mut mbr = [0u8; 512];
    disk.read_exact(&mut mbr)?;
    // Keep the boot code area (446 bytes) as it was; replace the partition records.
    mbr[446..].copy_from_slice(&grown.protective_mbr()[446..]);
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&mbr)?;
    disk.seek(SeekFrom::Start(SECTOR_SIZE))?;
    disk.write_all(&grown.header(false))?;
    barrier(disk)?;

    let old_backup = table.alternate_lba;
    let backup_moved = table.from_backup || old_backup != last;
    let old_backup_is_free = old_backup > 1
        && old_backup < last
        && grown
            .partitions
            .iter()
            .enumerate()
            .all(|(i, p)| i == index || old_backup < p.first_lba || old_backup > p.last_lba);
    if !table.from_backup && old_backup != last && old_backup_is_free {
        disk.seek(SeekFrom::Start(old_backup * SECTOR_SIZE))?;
        disk.write_all(&[0u8; SECTOR_SIZE as usize])?;
        barrier(disk)?;
    }
    Ok(GrowOutcome::Grown {
        old_last_lba,
        new_last_lba,
        backup_moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample() -> Gpt {
        Gpt {
            disk_guid: Guid::parse("01234567-89ab-4def-8123-456789abcdef").unwrap(),
            total_sectors: 8192,
            partitions: vec![GptPartition {
                type_guid: Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap(),
                unique_guid: Guid::parse("fedcba98-7654-4321-8fed-cba987654321").unwrap(),
                first_lba: 2048,
                last_lba: 4095,
                attributes: 0,
                name: "ztos-esp".to_string(),
            }],
        }
    }

    #[test]
    fn protective_mbr_bytes() {
        let mbr = sample().protective_mbr();
        assert_eq!(
            &mbr[446..462],
            &[0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0x1f, 0, 0]
        );
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        assert!(mbr[..446].iter().all(|&b| b == 0));
    }

    #[test]
    fn header_fields_and_crcs() {
        let gpt = sample();
        let h = gpt.header(false);
        assert_eq!(&h[0..8], b"EFI PART");
        assert_eq!(&h[8..16], &[0, 0, 1, 0, 92, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(h[24..32].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(h[32..40].try_into().unwrap()), 8191);
        assert_eq!(u64::from_le_bytes(h[40..48].try_into().unwrap()), 34);
        assert_eq!(u64::from_le_bytes(h[48..56].try_into().unwrap()), 8158);
        assert_eq!(u64::from_le_bytes(h[72..80].try_into().unwrap()), 2);
        // Disk GUID in mixed-endian order.
        assert_eq!(&h[56..60], &[0x67, 0x45, 0x23, 0x01]);
        // The header CRC covers the 92 header bytes with the CRC field zero.
        let mut zeroed = h;
        zeroed[16..20].fill(0);
        assert_eq!(
            u32::from_le_bytes(h[16..20].try_into().unwrap()),
            crc32fast::hash(&zeroed[..92])
        );
        assert!(h[92..].iter().all(|&b| b == 0));

        let entries = gpt.entry_array();
        assert_eq!(entries.len(), 16384);
        assert_eq!(&entries[32..40], &2048u64.to_le_bytes());
        assert_eq!(&entries[40..48], &4095u64.to_le_bytes());
        assert_eq!(&entries[56..60], &[b'z', 0, b't', 0]);
        assert_eq!(
            u32::from_le_bytes(h[88..92].try_into().unwrap()),
            crc32fast::hash(&entries)
        );

        let backup = gpt.header(true);
        assert_eq!(u64::from_le_bytes(backup[24..32].try_into().unwrap()), 8191);
        assert_eq!(u64::from_le_bytes(backup[32..40].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(backup[72..80].try_into().unwrap()), 8159);
    }

    #[test]
    fn crc32_is_the_ieee_polynomial() {
        // The check value of CRC-32/ISO-HDLC, the CRC the UEFI specification uses.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trips_through_a_disk_and_detects_corruption() {
        let gpt = sample();
        let mut disk = Cursor::new(vec![0u8; 8192 * 512]);
        gpt.write_to(&mut disk).unwrap();
        assert_eq!(Gpt::read_from(&mut disk, 8192).unwrap(), gpt);
        let bytes = disk.get_mut();
        // Backup header at the last sector.
        assert_eq!(&bytes[8191 * 512..8191 * 512 + 8], b"EFI PART");
        // Flip a bit of the first entry's name: the entry CRC no longer matches.
        bytes[1024 + 56] ^= 1;
        let err = Gpt::read_from(&mut disk, 8192).unwrap_err();
        assert!(matches!(err, GptError::EntriesCrc { .. }), "{err}");
    }

    #[test]
    fn rejects_partitions_outside_the_usable_area_naming_them() {
        let mut gpt = sample();
        gpt.partitions[0].last_lba = 8191;
        let err = gpt.validate().unwrap_err();
        assert!(err.to_string().contains("\"ztos-esp\""), "{err}");
    }

    /// An 8 MiB disk as the builder would write it: two partitions, the last one small.
    fn small_image() -> Gpt {
        let mut gpt = sample();
        gpt.total_sectors = 16384;
        gpt.partitions.push(GptPartition {
            type_guid: Guid::parse("4d21b016-b534-45c2-a9fb-5c16e091fd2d").unwrap(),
            unique_guid: Guid::parse("11111111-2222-4333-8444-555555555555").unwrap(),
            first_lba: 4096,
            last_lba: 8191,
            attributes: 0,
            name: "ztos-perm".to_string(),
        });
        gpt
    }

    /// `small_image` written, then the disk enlarged to `total` sectors (like `dd` of the
    /// image onto a bigger disk).
    fn enlarged_disk(total: u64) -> Cursor<Vec<u8>> {
        let mut disk = Cursor::new(vec![0u8; 16384 * 512]);
        small_image().write_to(&mut disk).unwrap();
        disk.get_mut().resize(total as usize * 512, 0);
        disk
    }

    fn no_barrier(_: &mut Cursor<Vec<u8>>) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn grow_fills_a_larger_disk_moves_the_backup_and_is_idempotent() {
        let total = 40000; // not a multiple of 1 MiB: the end is rounded down
        let mut disk = enlarged_disk(total);
        let outcome = grow_partition_to_end(&mut disk, total, "ztos-perm", no_barrier).unwrap();
        // Last usable 40000-34 = 39966; aligned end (39967 / 2048 * 2048) - 1 = 38911.
        assert_eq!(
            outcome,
            GrowOutcome::Grown {
                old_last_lba: 8191,
                new_last_lba: 38911,
                backup_moved: true
            }
        );
        let table = Gpt::read_either(&mut disk, total).unwrap();
        assert!(!table.from_backup);
        assert_eq!(table.alternate_lba, total - 1);
        assert_eq!(table.last_usable_lba, total - 34);
        assert_eq!(table.gpt.partitions[1].last_lba, 38911);
        assert_eq!(table.gpt.partitions[1].first_lba, 4096);
        assert_eq!(table.gpt.partitions[0], small_image().partitions[0]);
        // The backup at the new end is a valid copy of the same table.
        let backup = Gpt::read_copy(&mut disk, total - 1, total).unwrap();
        assert_eq!(backup.gpt, table.gpt);
        assert_eq!(backup.alternate_lba, 1);
        // The old backup header (sector 16383) is gone, and the MBR covers the disk.
        assert!(disk.get_ref()[16383 * 512..16384 * 512]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(
            &disk.get_ref()[446 + 12..446 + 16],
            &((total - 1) as u32).to_le_bytes()
        );

        let before = disk.get_ref().clone();
        let again = grow_partition_to_end(&mut disk, total, "ztos-perm", no_barrier).unwrap();
        assert_eq!(again, GrowOutcome::AlreadyFull { last_lba: 38911 });
        assert!(
            disk.get_ref() == &before,
            "an idempotent run writes nothing"
        );
    }

    #[test]
    fn grow_on_a_disk_of_the_image_size_grows_in_place() {
        let mut disk = enlarged_disk(16384);
        // The builder's perm ends at 8191; the disk has room up to 16350 -> 14335 aligned.
        let outcome = grow_partition_to_end(&mut disk, 16384, "ztos-perm", no_barrier).unwrap();
        assert_eq!(
            outcome,
            GrowOutcome::Grown {
                old_last_lba: 8191,
                new_last_lba: 14335,
                backup_moved: false
            }
        );
        assert_eq!(
            Gpt::read_from(&mut disk, 16384).unwrap().partitions[1].last_lba,
            14335
        );
    }

    #[test]
    fn grow_stops_at_the_next_partition_and_never_shrinks() {
        let mut gpt = small_image();
        gpt.partitions[1].last_lba = 6143;
        gpt.partitions.push(GptPartition {
            name: "after".to_string(),
            first_lba: 10240,
            last_lba: 12287,
            ..gpt.partitions[0].clone()
        });
        let mut disk = Cursor::new(vec![0u8; 16384 * 512]);
        gpt.write_to(&mut disk).unwrap();
        let outcome = grow_partition_to_end(&mut disk, 16384, "ztos-perm", no_barrier).unwrap();
        assert_eq!(
            outcome,
            GrowOutcome::Grown {
                old_last_lba: 6143,
                new_last_lba: 10239,
                backup_moved: false
            }
        );
        // The partition before it has nothing after it to grow into: left as it is.
        let outcome = grow_partition_to_end(&mut disk, 16384, "ztos-esp", no_barrier).unwrap();
        assert_eq!(outcome, GrowOutcome::AlreadyFull { last_lba: 4095 });
    }

    #[test]
    fn grow_names_a_missing_label_and_a_disk_without_a_table() {
        let mut disk = enlarged_disk(20000);
        let error = grow_partition_to_end(&mut disk, 20000, "ztos-nope", no_barrier).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no partition labelled \"ztos-nope\" in the partition table"
        );
        let mut blank = Cursor::new(vec![0u8; 20000 * 512]);
        let error = grow_partition_to_end(&mut blank, 20000, "ztos-perm", no_barrier).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("neither GPT is readable: primary: no GPT signature"),
            "{error}"
        );
        let mut tiny = Cursor::new(vec![0u8; 10 * 512]);
        assert!(matches!(
            grow_partition_to_end(&mut tiny, 10, "ztos-perm", no_barrier),
            Err(GptError::DiskTooSmall(10))
        ));
    }

    /// A disk whose power is cut after `budget` more bytes: later writes fail, and the write
    /// that crosses the budget is torn (only its first bytes land).
    struct CutDisk {
        inner: Cursor<Vec<u8>>,
        budget: usize,
    }

    impl Read for CutDisk {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.inner.read(buf)
        }
    }

    impl Seek for CutDisk {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    impl Write for CutDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.budget == 0 {
                return Err(std::io::Error::other("power cut"));
            }
            let n = buf.len().min(self.budget);
            self.budget -= n;
            self.inner.write(&buf[..n])
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn grow_cut_at_any_byte_leaves_a_readable_table_and_a_rerun_finishes() {
        let total = 20000;
        let old = small_image();
        let mut done = enlarged_disk(total);
        grow_partition_to_end(&mut done, total, "ztos-perm", no_barrier).unwrap();
        let new = Gpt::read_either(&mut done, total).unwrap().gpt;
        // Two entry arrays, two headers, the MBR and the old backup's sector.
        let written = 2 * 16384 + 4 * 512;
        for budget in (0..=written)
            .step_by(512)
            .chain([1, 92, 511, 513, 16383, 16385])
        {
            let mut disk = CutDisk {
                inner: enlarged_disk(total),
                budget,
            };
            let _ = grow_partition_to_end(&mut disk, total, "ztos-perm", |_| Ok(()));
            let table = Gpt::read_either(&mut disk.inner, total)
                .unwrap_or_else(|error| panic!("cut after {budget} bytes: {error}"));
            let mut seen = table.gpt.clone();
            seen.total_sectors = total;
            let mut old_here = old.clone();
            old_here.total_sectors = total;
            assert!(
                seen == old_here || seen == new,
                "cut after {budget} bytes: a table that is neither old nor new: {seen:?}"
            );
            // Power back: the next boot finishes the job. (A cut between the primary and
            // the zeroing of the old backup leaves that stale sector inside the grown
            // partition, where nothing looks for a table; so compare the tables and the
            // first and last 34 sectors, not every byte.)
            let mut disk = disk.inner;
            grow_partition_to_end(&mut disk, total, "ztos-perm", no_barrier).unwrap();
            let table = Gpt::read_either(&mut disk, total).unwrap();
            assert_eq!(table.gpt, new, "cut after {budget} bytes");
            let ends = |bytes: &Vec<u8>| {
                let tail = bytes.len() - 33 * 512;
                (bytes[..34 * 512].to_vec(), bytes[tail..].to_vec())
            };
            assert!(
                ends(done.get_ref()) == ends(disk.get_ref()),
                "cut after {budget} bytes"
            );
        }
    }
}
