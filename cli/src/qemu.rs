//! Describing a QEMU VM and running it to completion with a deadline.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    Pc,
    Q35,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// A disk attached as virtio-blk-pci.
#[derive(Clone, Debug)]
pub struct Drive {
    pub path: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Debug)]
pub struct Vm {
    pub machine: Machine,
    pub accel: String,
    pub memory: String,
    pub cpus: u32,
    pub firmware: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub drives: Vec<Drive>,
    /// `-fw_cfg name=...,string=...` items, e.g. `opt/flint/log`.
    pub fw_cfg_strings: Vec<(String, String)>,
    /// isa-debug-exit at 0x501, so guest code can end QEMU with a status.
    pub debug_exit: bool,
    pub extra_args: Vec<String>,
}

impl Vm {
    pub fn new(firmware: impl Into<PathBuf>) -> Self {
        Vm {
            machine: Machine::Pc,
            accel: "tcg".into(),
            memory: "256M".into(),
            cpus: 1,
            firmware: firmware.into(),
            kernel: None,
            initrd: None,
            append: None,
            drives: Vec::new(),
            fw_cfg_strings: Vec::new(),
            debug_exit: true,
            extra_args: Vec::new(),
        }
    }

    /// The arguments after the program name. `-nodefaults` drops the VGA card, NIC and
    /// floppy/CD-ROM that a one-shot VM never uses; COM1 goes to QEMU's stdio.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-M".into(),
            self.machine.name().into(),
            "-accel".into(),
            self.accel.clone(),
            "-m".into(),
            self.memory.clone(),
            "-smp".into(),
            self.cpus.to_string(),
            "-bios".into(),
            self.firmware.display().to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-no-reboot".into(),
        ];
        if let Some(kernel) = &self.kernel {
            args.extend(["-kernel".into(), kernel.display().to_string()]);
        }
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        if let Some(append) = &self.append {
            args.extend(["-append".into(), append.clone()]);
        }
        for drive in &self.drives {
            let ro = if drive.read_only { ",readonly=on" } else { "" };
            args.extend([
                "-drive".into(),
                format!("file={},if=virtio,format=raw{ro}", drive.path.display()),
            ]);
        }
        for (name, value) in &self.fw_cfg_strings {
            args.extend(["-fw_cfg".into(), format!("name={name},string={value}")]);
        }
        if self.debug_exit {
            args.extend(["-device".into(), "isa-debug-exit,iobase=0x501,iosize=1".into()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(QEMU);
        command.args(self.args());
        command
    }

    /// Runs the VM with no input, capturing COM1, killing it at the deadline.
    pub fn run(&self, deadline: Duration) -> io::Result<Outcome> {
        let start = Instant::now();
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}")))?;
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let status = match child.wait_timeout(deadline)? {
            Some(status) => Some(status),
            None => {
                child.kill()?;
                child.wait()?;
                None
            }
        };
        let elapsed = start.elapsed();
        Ok(Outcome {
            status,
            console: stdout.join().expect("reader thread")?,
            qemu_stderr: stderr.join().expect("reader thread")?,
            elapsed,
        })
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut data = Vec::new();
        pipe.read_to_end(&mut data)?;
        Ok(data)
    })
}

#[derive(Debug)]
pub struct Outcome {
    /// `None` when the deadline killed QEMU.
    pub status: Option<ExitStatus>,
    pub console: Vec<u8>,
    pub qemu_stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.console).into_owned()
    }
}
