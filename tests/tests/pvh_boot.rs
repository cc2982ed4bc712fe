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
    // Both ways: the Debian kernel's boots ask for the firmware's timeline stamps, the minimal
    // kernel's do not.
    let stamps = kernel != "minimal";
    if stamps {
        vm.fw_cfg_strings.push(("opt/flint/timeline".into(), "1".into()));
    }
    let (outcome, console) = boot(&vm);
    assert!(console.contains("@@done"), "init did not finish; console:\n{console}");
    assert_eq!(outcome.exit_code(), Some(0), "poweroff -f must end QEMU through ACPI S5; console:\n{console}");
    assert_eq!(fact(&console, "cpus"), Some(cpus.to_string()), "console:\n{console}");
    // Asked for, the firmware appends its timeline stamps to a PVH kernel's command line.
    let seen = proc_cmdline(&console).expect("command line reported");
    let (given, appended) = seen.split_at(cmdline.len());
    assert_eq!(given, cmdline, "console:\n{console}");
    if stamps {
        assert!(appended.starts_with(" flint.fwtsc="), "timeline stamps missing: {seen:?}");
    } else {
        assert_eq!(appended, "", "stamps nobody asked for: {seen:?}");
    }
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

/// The ACPI tables go in the low window above a PVH kernel QEMU loaded at 1 MiB; when the
/// kernel leaves too little room there (here all but 64 KiB: pc's tables are about 120 KiB,
/// microvm's a few), at the top of RAM. Either way the kernel is entered intact (it ends QEMU
/// with its own status) and the tables are where the firmware says.
#[test]
fn acpi_tables_go_above_a_kernel_in_the_low_window_or_at_the_top() {
    const P_MEMSZ: usize = 64 + 40; // the first program header's, the PT_LOAD at 1 MiB
    for (machine, memsz, window) in [
        (Machine::Pc, None, true),
        (Machine::Pc, Some(0xf_0000u64), false),
        (Machine::Microvm, Some(0xf_0000u64), true),
    ] {
        let (mut elf, status) = flint::bench::null_pvh_kernel();
        if let Some(memsz) = memsz {
            elf[P_MEMSZ..P_MEMSZ + 8].copy_from_slice(&memsz.to_le_bytes());
        }
        let end = 0x10_0000 + u64::from_le_bytes(elf[P_MEMSZ..P_MEMSZ + 8].try_into().unwrap());
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&elf).unwrap();
        let mut vm = Vm::new(firmware());
        vm.machine = machine;
        vm.memory = "256M".into();
        vm.kernel = Some(file.path().to_path_buf());
        vm.fw_cfg_strings.push(("opt/flint/log".into(), "1".into()));
        let (outcome, console) = boot(&vm);
        assert_eq!(outcome.exit_code(), Some(status), "{machine:?}: the kernel was not entered; console:\n{console}");
        let tables = console
            .lines()
            .find_map(|line| line.strip_prefix("flint: ACPI tables at 0x"))
            .and_then(|rest| u64::from_str_radix(rest.split(',').next()?, 16).ok())
            .unwrap_or_else(|| panic!("{machine:?}: no ACPI tables logged; console:\n{console}"));
        if window {
            assert!((end..0x20_0000).contains(&tables), "{machine:?}: tables at {tables:#x}, kernel ends {end:#x}");
        } else {
            assert!(tables >= 255 << 20, "{machine:?}: tables at {tables:#x}, not at the top of RAM");
        }
    }
}
