//! PID 1 boot stages: the initramfs stage (find and mount the slot root, switch_root) and the system stage (mounts, hostname, loopback, watchdog), then the supervisor.
