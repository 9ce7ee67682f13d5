//! `grow_partition_to_end` on a disk image file the size the builder makes (1410 MiB, the
//! real layout), copied into a 2 GiB sparse file as `dd` to a bigger disk would: perm fills
//! the disk, the backup table moves to the real end, and util-linux's `sfdisk` (an independent
//! GPT implementation) agrees and finds no problem.

use std::fs::{File, OpenOptions};
use std::process::Command;

use ztos_image::gpt::{grow_partition_to_end, Gpt, GptPartition, GrowOutcome};
use ztos_image::guid::Guid;
use ztos_image::layout::{image_size, partition_extents, MIB, PERM_LABEL, SECTOR_SIZE};

const DISK_SIZE: u64 = 2048 * MIB;

fn builder_table() -> Gpt {
    Gpt {
        disk_guid: Guid::derive(&["grow-test", "disk"]),
        total_sectors: image_size() / SECTOR_SIZE,
        partitions: partition_extents()
            .iter()
            .map(|extent| GptPartition {
                type_guid: Guid::parse(extent.spec.type_guid).unwrap(),
                unique_guid: Guid::derive(&["grow-test", extent.spec.label]),
                first_lba: extent.first_lba(),
                last_lba: extent.last_lba(),
                attributes: 0,
                name: extent.spec.label.to_string(),
            })
            .collect(),
    }
}

fn sfdisk(args: &[&str]) -> (bool, String) {
    let output = Command::new("sfdisk")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("sfdisk (Debian package fdisk, installed by .ci/deps) cannot run: {error}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `start` and `size` (sectors) of the partition named `label` in `sfdisk --dump` output:
/// `disk.img4 : start=     1234, size=     5678, type=..., uuid=..., name="ztos-perm"`.
fn dumped_extent(dump: &str, label: &str) -> (u64, u64) {
    let line = dump
        .lines()
        .find(|line| line.contains(&format!("name=\"{label}\"")))
        .unwrap_or_else(|| panic!("sfdisk lists no {label}: {dump}"));
    let field = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.split(',').next().unwrap().trim().parse().unwrap()
    };
    (field("start="), field("size="))
}

#[test]
fn grow_perm_of_a_builder_image_copied_to_a_2_gib_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let image_sectors = image_size() / SECTOR_SIZE;
    {
        let mut image = File::create(&path).unwrap();
        image.set_len(image_size()).unwrap();
        builder_table().write_to(&mut image).unwrap();
    }
    // dd onto a bigger disk: the same bytes, more sectors after them (sparse).
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(DISK_SIZE)
        .unwrap();
    let path_str = path.to_str().unwrap();
    // Before: sfdisk sees the backup table in the middle of the disk.
    let (_, before) = sfdisk(&["--verify", path_str]);
    assert!(
        before.contains("backup") || before.contains("not at the end"),
        "sfdisk should notice the misplaced backup before the grow: {before}"
    );

    let total = DISK_SIZE / SECTOR_SIZE;
    let mut disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let perm = partition_extents()
        .into_iter()
        .find(|e| e.spec.label == PERM_LABEL)
        .unwrap();
    let outcome = grow_partition_to_end(&mut disk, total, PERM_LABEL, |d| d.sync_data()).unwrap();
    // 2 GiB = 4194304 sectors; the usable area ends at 4194270; aligned down to 1 MiB the
    // partition ends at 4192255 (the last MiB holds the backup table).
    assert_eq!(
        outcome,
        GrowOutcome::Grown {
            old_last_lba: perm.last_lba(),
            new_last_lba: total - 2048 - 1,
            backup_moved: true,
        }
    );
    assert!(image_sectors < total);

    let (ok, verify) = sfdisk(&["--verify", path_str]);
    assert!(ok, "sfdisk --verify: {verify}");
    assert!(!verify.contains("backup"), "{verify}");
    let (ok, dump) = sfdisk(&["--dump", path_str]);
    assert!(ok, "sfdisk --dump: {dump}");
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(&format!("last-lba: {}", total - 34)),
        "{dump}"
    );
    for extent in partition_extents() {
        let expected_last = if extent.spec.label == PERM_LABEL {
            total - 2048 - 1
        } else {
            extent.last_lba()
        };
        let (start, size) = dumped_extent(&dump, extent.spec.label);
        assert_eq!(start, extent.first_lba(), "{}: {dump}", extent.spec.label);
        assert_eq!(
            size,
            expected_last + 1 - extent.first_lba(),
            "{}: {dump}",
            extent.spec.label
        );
    }

    // Idempotent: a second boot changes nothing.
    let again = grow_partition_to_end(&mut disk, total, PERM_LABEL, |d| d.sync_data()).unwrap();
    assert_eq!(
        again,
        GrowOutcome::AlreadyFull {
            last_lba: total - 2048 - 1
        }
    );
}
