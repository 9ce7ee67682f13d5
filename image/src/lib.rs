//! ztos-image: the ZTOS disk layout, defined once here and used by the image builder, by
//! ztos-init (to find the booted slot's root and the persistent partition) and by the updater.

pub mod layout;
