//! ztos-image: the ZTOS disk layout, defined once here and used by the image builder, by
//! ztos-init (to find the booted slot's root and the persistent partition) and by the updater;
//! and the pieces the `ztos-image` tool builds images from: GPT, ESP, initramfs (newc cpio),
//! kernel config checks and module resolution.

pub mod bootloader;
pub mod build;
pub mod bundle;
pub mod cpio;
pub mod disk_io;
pub mod esp;
pub mod esp_mount;
pub mod gpt;
pub mod guid;
pub mod host;
pub mod inspect;
pub mod kernel_config;
pub mod layout;
pub mod modules;
pub mod slots;
pub mod tree;
pub mod trust;
pub mod version;
