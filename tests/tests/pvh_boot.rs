//! PVH: the firmware boots a kernel's uncompressed vmlinux (extracted from the bzImage by
//! `flint::vmlinux`) through its 32-bit PVH entry with `hvm_start_info`: the command line,
//! the initrd as module 0, the memory map (above 4 GiB too), the RSDP (both CPUs, ACPI
//! power-off).

use flint::kernel::Kernel;
use flint::qemu::{Machine, Vm};
use flint_tests::*;
use std::io::Write;

fn vmlinux(name: &str) -> std::path::PathBuf {
    let kernel = Kernel::resolve(Some(name), None).expect("kernel in the cache: run scripts/test.sh");
    flint::vmlinux::pvh_image(&kernel).expect("extraction works").expect("the kernel has a PVH entry")
}

fn boot_pvh(kernel: &str, machine: Machine, memory: &str, cpus: u32) {
    boot_pvh_on(kernel, machine, &[], memory, cpus);
}

/// `machine_options` go to `-machine` after the machine's name (e.g. `acpi=off`).
fn boot_pvh_on(kernel: &str, machine: Machine, machine_options: &[&str], memory: &str, cpus: u32) {
    let acpi = !machine_options.contains(&"acpi=off");
    // Without ACPI nothing can power the machine off; a reboot ends QEMU (-no-reboot).
    let script = if acpi { "" } else { "echo @@done\nreboot -f" };
    let initramfs = test_initramfs(&debian_kernel(), &[], script);
    let mut initrd = tempfile::NamedTempFile::new().unwrap();
    initrd.write_all(&initramfs).unwrap();
    let mut vm = Vm::new(firmware());
    vm.machine = machine;
    for option in machine_options {
        vm.extra_args.extend(["-machine".into(), option.to_string()]);
    }
    vm.memory = memory.into();
    vm.cpus = cpus;
    vm.kernel = Some(vmlinux(kernel));
    vm.initrd = Some(initrd.path().to_path_buf());
    let mut cmdline = String::from("console=ttyS0 quiet panic=-1 flint.test.quoted=\"a b 'c'\"");
    for param in machine.kernel_params(&vm.accel) {
        cmdline = format!("{cmdline} {param}");
    }
    vm.append = Some(cmdline.clone());
    let (outcome, console) = boot(&vm);
    assert!(console.contains("@@done"), "init did not finish; console:\n{console}");
    assert_eq!(outcome.exit_code(), Some(0), "poweroff -f must end QEMU through ACPI S5; console:\n{console}");
    assert_eq!(fact(&console, "cpus"), Some(cpus.to_string()), "console:\n{console}");
    // The firmware appends its timeline stamps to a PVH kernel's command line.
    let seen = proc_cmdline(&console).expect("command line reported");
    let (given, stamps) = seen.split_at(cmdline.len());
    assert_eq!(given, cmdline, "console:\n{console}");
    assert!(stamps.starts_with(" flint.fwtsc="), "timeline stamps missing: {seen:?}");
    if memory == "6G" {
        let kib: u64 = fact(&console, "memtotal_kb").expect("MemTotal reported").parse().unwrap();
        assert!(kib > 5 * 1024 * 1024, "MemTotal {kib} kB does not include memory above 4 GiB");
    }
}

#[test]
fn debian_kernel_pvh_on_pc_with_two_cpus_and_6g() {
    boot_pvh("debian-cloud", Machine::Pc, "6G", 2);
}

#[test]
fn debian_kernel_pvh_on_q35() {
    boot_pvh("debian-cloud", Machine::Q35, "256M", 2);
}

#[test]
fn minimal_kernel_pvh_on_q35_with_6g() {
    boot_pvh("minimal", Machine::Q35, "6G", 1);
}

#[test]
fn debian_kernel_pvh_on_microvm_with_two_cpus_and_6g() {
    boot_pvh("debian-cloud", Machine::Microvm, "6G", 2);
}

#[test]
fn minimal_kernel_pvh_on_microvm() {
    boot_pvh("minimal", Machine::Microvm, "256M", 2);
}

/// Without ACPI: no RSDP, one CPU (no MADT, and microvm has no MP table).
#[test]
fn debian_kernel_pvh_on_microvm_without_acpi() {
    boot_pvh_on("debian-cloud", Machine::Microvm, &["acpi=off"], "256M", 1);
}
