//! Bad input to the firmware: one line on COM1 naming the problem and the fix, then a
//! distinct status through isa-debug-exit (QEMU exits with 2 * status + 1). Never a hang.

use flint::qemu::{Machine, Vm};
use flint_tests::*;
use std::io::Write;

/// Boots and returns (QEMU's exit code, console).
fn run(vm: &Vm) -> (i32, String) {
    let (outcome, console) = boot(vm);
    (outcome.exit_code().expect("QEMU exited normally"), console)
}

fn vm(memory: &str) -> Vm {
    let mut vm = Vm::new(firmware());
    vm.memory = memory.into();
    vm
}

fn expect_error(vm: &Vm, firmware_status: i32, words: &str) {
    let (code, console) = run(vm);
    assert_eq!(code, 2 * firmware_status + 1, "console:\n{console}");
    let line = console
        .lines()
        .find(|l| l.starts_with("flint: error: "))
        .unwrap_or_else(|| panic!("no error line; console:\n{console}"));
    assert!(line.contains(words), "error line {line:?} should mention {words:?}");
    assert!(line.contains(": "), "error line names a fix: {line:?}");
}

fn temp_file(content: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content).unwrap();
    file
}

#[test]
fn no_kernel() {
    expect_error(&vm("128M"), 17, "-kernel");
}

#[test]
fn file_that_is_not_a_kernel() {
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let file = temp_file(&junk);
    let mut vm = vm("128M");
    vm.kernel = Some(file.path().into());
    expect_error(&vm, 18, "not a Linux kernel");
}

#[test]
fn kernel_without_64_bit_entry() {
    let mut image = std::fs::read(debian_kernel().image()).unwrap();
    image[0x236] &= !1; // xloadflags: clear XLF_KERNEL_64
    let file = temp_file(&image);
    let mut vm = vm("128M");
    vm.kernel = Some(file.path().into());
    expect_error(&vm, 19, "64-bit");
}

#[test]
fn kernel_that_does_not_fit_in_ram() {
    let mut vm = vm("48M");
    vm.kernel = Some(debian_kernel().image());
    expect_error(&vm, 20, "-m");
}

#[test]
fn initrd_that_does_not_fit_in_ram() {
    // QEMU itself refuses an initrd larger than RAM; this one fits QEMU but not beside the kernel.
    let initrd = temp_file(&vec![0u8; 90 << 20]);
    let mut vm = vm("128M");
    vm.kernel = Some(debian_kernel().image());
    vm.initrd = Some(initrd.path().into());
    expect_error(&vm, 21, "initrd");
}

#[test]
fn command_line_longer_than_the_kernel_accepts() {
    let mut vm = vm("128M");
    vm.kernel = Some(debian_kernel().image());
    vm.append = Some("x".repeat(3000));
    expect_error(&vm, 22, "command line");
}

#[test]
fn too_little_ram() {
    let mut vm = vm("8M");
    vm.kernel = Some(debian_kernel().image());
    expect_error(&vm, 23, "RAM");
}

/// Without isa-debug-exit the error still ends the VM, through ACPI S5 (QEMU exits 0): the PM
/// block on `pc` and `q35`, the GED device's sleep register on microvm.
#[test]
fn without_isa_debug_exit_errors_power_off_through_acpi() {
    for machine in [Machine::Pc, Machine::Q35, Machine::Microvm] {
        let mut vm = vm("128M");
        vm.machine = machine;
        vm.debug_exit = false;
        let (code, console) = run(&vm);
        assert_eq!(code, 0, "{machine:?}: console:\n{console}");
        assert!(console.contains("flint: error: no kernel"), "{machine:?}: console:\n{console}");
    }
}
