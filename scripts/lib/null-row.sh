# Sourced by scripts/fw-translation.sh, fw-cputime.sh and fw-profile.sh. `null_row MACHINE
# FIRMWARE KERNEL [QEMU OPTIONS...]` boots a null kernel as `flint bench`'s null rows do
# (cli/src/bench/scenario.rs: TCG, 256 MiB, one CPU, the debug exit) under whatever the array
# `wrapper` holds (valgrind, perf stat, ...), output discarded. Its status is ignored: QEMU
# exits with the null kernel's isa-debug-exit code, never 0.
wrapper=()
null_row() {
    local machine=$1 firmware=$2 kernel=$3
    shift 3
    "${wrapper[@]}" qemu-system-x86_64 -M "$machine" -accel tcg -m 256M -smp 1 -bios "$firmware" -nodefaults \
        -no-user-config -display none -no-reboot -device isa-debug-exit,iobase=0x501,iosize=1 \
        -kernel "$kernel" "$@" >/dev/null 2>&1 || true
}
