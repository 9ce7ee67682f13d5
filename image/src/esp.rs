//! The EFI system partition: formats FAT32 with `fatfs` and writes the boot files with one
//! fixed timestamp (from SOURCE_DATE_EPOCH), and reads the files back for `inspect`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use fatfs::{Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time};

use crate::disk_io::PartitionIo;

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("formatting the ESP as FAT32: {0}")]
    Format(#[source] std::io::Error),
    #[error("writing {path} into the ESP: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the ESP: {0}")]
    Read(#[source] std::io::Error),
}

/// A `TimeProvider` answering one fixed moment, so FAT timestamps do not depend on the clock.
#[derive(Debug)]
struct FixedTime(DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }

    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// The FAT date and time (UTC) of a Unix time, clamped to FAT's 1980..=2107 range.
pub fn fat_date_time(unix_seconds: u64) -> DateTime {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    DateTime {
        date: Date {
            year: year.min(2107) as u16,
            month: month as u16,
            day: day as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// Formats `partition` as FAT32 labelled `ZTOS-ESP` with `volume_id` and writes `files`
/// (path -> content; parent directories are created), all stamped with `unix_time`.
pub fn write_esp(
    partition: PartitionIo<'_>,
    volume_id: u32,
    unix_time: u64,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), EspError> {
    let mut partition = partition;
    let mut label = *b"           ";
    label[..8].copy_from_slice(b"ZTOS-ESP");
    fatfs::format_volume(
        &mut partition,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .volume_id(volume_id)
            .volume_label(label),
    )
    .map_err(EspError::Format)?;
    // fatfs wants a `&'static` time provider; one small allocation per image build.
    let time: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_date_time(unix_time))));
    let fs = FileSystem::new(partition, FsOptions::new().time_provider(time))
        .map_err(EspError::Format)?;
    let root = fs.root_dir();
    for (path, data) in files {
        let write_err = |source| EspError::Write {
            path: path.clone(),
            source,
        };
        let components: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (file_name, dirs) = components.split_last().expect("a non-empty path");
        let mut dir = root.clone();
        for d in dirs {
            dir = match dir.open_dir(d) {
                Ok(existing) => existing,
                Err(_) => dir.create_dir(d).map_err(write_err)?,
            };
        }
        let mut file = dir.create_file(file_name).map_err(write_err)?;
        file.truncate().map_err(write_err)?;
        file.write_all(data).map_err(write_err)?;
        file.flush().map_err(write_err)?;
    }
    drop(root);
    fs.unmount().map_err(EspError::Format)?;
    Ok(())
}

/// Every file of the ESP (path without leading `/` -> content).
pub fn read_esp(partition: PartitionIo<'_>) -> Result<BTreeMap<String, Vec<u8>>, EspError> {
    let fs = FileSystem::new(partition, FsOptions::new()).map_err(EspError::Read)?;
    let mut files = BTreeMap::new();
    let mut pending = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = pending.pop() {
        for entry in dir.iter() {
            let entry = entry.map_err(EspError::Read)?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.is_dir() {
                pending.push((format!("{path}/"), entry.to_dir()));
            } else {
                let mut data = Vec::new();
                entry
                    .to_file()
                    .read_to_end(&mut data)
                    .map_err(EspError::Read)?;
                files.insert(path, data);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_fat_dates() {
        let t = fat_date_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        let t = fat_date_time(951_782_400); // 2000-02-29
        assert_eq!((t.date.year, t.date.month, t.date.day), (2000, 2, 29));
        assert_eq!(fat_date_time(0).date.year, 1980);
    }

    #[test]
    fn files_written_read_back_and_the_bytes_are_reproducible() {
        let build = || {
            let file = tempfile::tempfile().unwrap();
            let size = 64 * 1024 * 1024;
            file.set_len(size).unwrap();
            let mut files = BTreeMap::new();
            files.insert("EFI/BOOT/BOOTX64.EFI".to_string(), vec![0x4d, 0x5a, 1, 2]);
            files.insert(
                "loader/loader.conf".to_string(),
                b"default ztos-a.conf\n".to_vec(),
            );
            files.insert("ztos-a/vmlinuz".to_string(), vec![7; 100_000]);
            write_esp(
                PartitionIo::new(&file, 0, size),
                0x1234_5678,
                1_700_000_000,
                &files,
            )
            .unwrap();
            let read = read_esp(PartitionIo::new(&file, 0, size)).unwrap();
            assert_eq!(read, files);
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes).unwrap();
            bytes
        };
        let first = build();
        assert_eq!(&first[82..90], b"FAT32   ");
        assert!(first == build(), "two ESP builds differ");
    }
}
