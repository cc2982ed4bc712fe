//! Boots Debian's 6.1 cloud kernel through fw.bin and checks what the guest sees.

use flint::qemu::{Drive, Machine, Vm};
use flint_tests::*;
use std::io::Write;

fn vm_with_initramfs(
    machine: Machine,
    memory: &str,
    cpus: u32,
    modules: &[&str],
    script: &str,
) -> (Vm, tempfile::NamedTempFile) {
    let kernel = debian_kernel();
    let mut initrd = tempfile::NamedTempFile::new().unwrap();
    initrd.write_all(&test_initramfs(&kernel, modules, script)).unwrap();
    let mut vm = Vm::new(firmware());
    vm.machine = machine;
    vm.memory = memory.into();
    vm.cpus = cpus;
    vm.kernel = Some(kernel.image());
    vm.initrd = Some(initrd.path().to_path_buf());
    vm.append = Some("console=ttyS0 quiet panic=-1".into());
    (vm, initrd)
}

fn boots_and_reports(machine: Machine, memory: &str, cpus: u32) -> String {
    let (vm, _initrd) = vm_with_initramfs(machine, memory, cpus, &[], "");
    let (outcome, console) = boot(&vm);
    assert!(console.contains("@@done"), "init did not finish; console:\n{console}");
    assert_eq!(outcome.exit_code(), Some(0), "poweroff -f must end QEMU through ACPI S5; console:\n{console}");
    assert_eq!(fact(&console, "cpus").as_deref(), Some(cpus.to_string().as_str()), "console:\n{console}");
    console
}

#[test]
fn pc_one_cpu_128m() {
    boots_and_reports(Machine::Pc, "128M", 1);
}

#[test]
fn q35_one_cpu_128m() {
    boots_and_reports(Machine::Q35, "128M", 1);
}

#[test]
fn pc_two_cpus() {
    boots_and_reports(Machine::Pc, "256M", 2);
}

#[test]
fn q35_two_cpus() {
    boots_and_reports(Machine::Q35, "256M", 2);
}

fn memory_above_4g_is_visible(machine: Machine) {
    let console = boots_and_reports(machine, "6G", 1);
    let kib: u64 = fact(&console, "memtotal_kb").expect("MemTotal reported").parse().unwrap();
    // 6 GiB minus the PCI hole and the kernel's own reservations: well above 4 GiB.
    assert!(kib > 5 * 1024 * 1024, "MemTotal {kib} kB does not include memory above 4 GiB");
}

#[test]
fn pc_6g_memory_above_4g() {
    memory_above_4g_is_visible(Machine::Pc);
}

#[test]
fn q35_6g_memory_above_4g() {
    memory_above_4g_is_visible(Machine::Q35);
}

/// 2047 bytes, the most Debian's kernel accepts (`cmdline_size`), with both kinds of quotes.
fn long_command_line() -> String {
    let mut cmdline = String::from(
        "console=ttyS0 quiet panic=-1 flint.test.quoted=\"a b 'c' d\" flint.test.single='x\"y' flint.test.fill=",
    );
    while cmdline.len() < 2047 {
        cmdline.push(char::from(b'a' + (cmdline.len() % 26) as u8));
    }
    cmdline
}

#[test]
fn long_command_line_arrives_byte_exact() {
    let (mut vm, _initrd) = vm_with_initramfs(Machine::Pc, "128M", 1, &[], "");
    let cmdline = long_command_line();
    vm.append = Some(cmdline.clone());
    let (_, console) = boot(&vm);
    assert_eq!(proc_cmdline(&console).as_deref(), Some(cmdline.as_str()), "console:\n{console}");
}

fn virtio_blk_disk_is_readable(machine: Machine) {
    let mut disk = tempfile::NamedTempFile::new().unwrap();
    let marker = format!("flint-disk-marker-{machine:?}");
    let mut content = marker.clone().into_bytes();
    content.resize(1 << 20, 0);
    disk.write_all(&content).unwrap();
    let script = format!("echo \"@@disk=$(head -c {} /dev/vda)\"", marker.len());
    let (mut vm, _initrd) = vm_with_initramfs(machine, "256M", 1, &VIRTIO_BLK_MODULES, &script);
    vm.drives.push(Drive::new(disk.path(), true));
    let (_, console) = boot(&vm);
    assert_eq!(fact(&console, "disk"), Some(marker), "console:\n{console}");
}

#[test]
fn pc_virtio_blk_disk_is_readable() {
    virtio_blk_disk_is_readable(Machine::Pc);
}

#[test]
fn q35_virtio_blk_disk_is_readable() {
    virtio_blk_disk_is_readable(Machine::Q35);
}

/// Without `-initrd` the kernel gets the init embedded in fw.bin. Given no workload, that
/// init says so and ends the VM with its "bad parameters" status (120, so QEMU exits 241).
#[test]
fn without_initrd_the_embedded_init_runs() {
    let mut vm = Vm::new(firmware());
    vm.kernel = Some(debian_kernel().image());
    vm.append = Some("console=ttyS0 quiet panic=-1".into());
    let (outcome, console) = boot(&vm);
    assert!(console.contains("flint-init: no workload given"), "console:\n{console}");
    assert_eq!(outcome.exit_code(), Some(2 * 120 + 1), "console:\n{console}");
}

/// Asked for, the firmware's timeline stamps reach the guest as a setup_data node, and the
/// command line is untouched by them; not asked for, there is no node.
#[test]
fn timeline_node_reaches_the_guest_when_asked() {
    let script = "for node in /sys/kernel/boot_params/setup_data/*; do \
                  echo \"@@setup_data=$(cat $node/type) $(wc -c < $node/data)\"; done";
    let (mut vm, _initrd) = vm_with_initramfs(Machine::Pc, "128M", 1, &[], script);
    let (_, console) = boot(&vm);
    assert!(!console.contains("0x464c4e54"), "a timeline node nobody asked for; console:\n{console}");
    vm.fw_cfg_strings.push(("opt/flint/timeline".into(), "1".into()));
    let (_, console) = boot(&vm);
    assert_eq!(fact(&console, "setup_data").as_deref(), Some("0x464c4e54 24"), "console:\n{console}");
    assert_eq!(proc_cmdline(&console).as_deref(), vm.append.as_deref());
}

/// virtio-net-pci with the BARs and interrupt routing the firmware set up: a DHCP exchange with
/// QEMU's built-in user-mode network (nothing leaves QEMU) needs working DMA and interrupts.
fn virtio_net_gets_a_dhcp_lease(machine: Machine) {
    let mut modules: Vec<&str> = VIRTIO_BLK_MODULES[..5].to_vec();
    modules.extend(["failover", "net_failover", "virtio_net"]);
    let script = "ip link set eth0 up && udhcpc -i eth0 -n -q -t 5 -s /bin/true >/dev/null 2>&1 \
                  && echo \"@@dhcp=ok\"; echo \"@@irqs=$(grep -c virtio /proc/interrupts)\"";
    let (mut vm, _initrd) = vm_with_initramfs(machine, "256M", 1, &modules, script);
    vm.extra_args.extend(["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"].map(String::from));
    let (_, console) = boot(&vm);
    assert_eq!(fact(&console, "dhcp").as_deref(), Some("ok"), "console:\n{console}");
    let irqs: u32 = fact(&console, "irqs").expect("interrupt count").parse().unwrap();
    assert!(irqs > 0, "no virtio interrupts in /proc/interrupts; console:\n{console}");
}

#[test]
fn pc_virtio_net_gets_a_dhcp_lease() {
    virtio_net_gets_a_dhcp_lease(Machine::Pc);
}

#[test]
fn q35_virtio_net_gets_a_dhcp_lease() {
    virtio_net_gets_a_dhcp_lease(Machine::Q35);
}
