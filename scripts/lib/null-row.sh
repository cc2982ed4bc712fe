# Sourced by scripts/fw-translation.sh, fw-cputime.sh, fw-profile.sh, fw-execs.sh and
# fw-to-entry64.sh. `null_row MACHINE FIRMWARE KERNEL [QEMU OPTIONS...]` boots a kernel as
# `flint bench`'s null and kernel-entry rows do (cli/src/bench/scenario.rs: TCG, 256 MiB, one
# CPU, the debug exit) under whatever the array `wrapper` holds (valgrind, perf stat, ...),
# output discarded, QEMU's errors to the file `errors` names (none unless set). Its status is
# ignored: QEMU exits with the null kernel's isa-debug-exit code, never 0.
wrapper=()
errors=/dev/null
null_row() {
    local machine=$1 firmware=$2 kernel=$3
    shift 3
    "${wrapper[@]}" qemu-system-x86_64 -M "$machine" -accel tcg -m 256M -smp 1 -bios "$firmware" -nodefaults \
        -no-user-config -display none -no-reboot -device isa-debug-exit,iobase=0x501,iosize=1 \
        -kernel "$kernel" "$@" >/dev/null 2>"$errors" || true
}
