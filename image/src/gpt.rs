//! The GUID partition table (UEFI specification, chapter 5): a protective MBR, the primary
//! header and entry array at the start of the disk and their backup at the end. Encoding and
//! decoding are pure; [`Gpt::write_to`] and [`Gpt::read_from`] do the I/O.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::guid::Guid;
use crate::layout::SECTOR_SIZE;

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
    #[error("reading or writing the partition table: {0}")]
    Io(#[from] std::io::Error),
}

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
}
