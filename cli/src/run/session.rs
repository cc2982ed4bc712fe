//! One QEMU process: spawning it, wiring the virtio-serial ports to flint's stdio, relaying
//! signals, and collecting how it ended.

use super::*;

/// How QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuEnd {
    Exited(i32),
    Signaled(i32),
    /// flint killed it at the host-side deadline.
    DeadlineKilled,
    /// flint killed it because its init had not reported ready by `--boot-timeout`.
    BootTimedOut,
    /// flint got this signal and stopped the VM.
    Interrupted(i32),
}

/// What a finished VM left behind.
#[derive(Debug)]
pub struct Ending {
    pub qemu: QemuEnd,
    /// What arrived on the status port.
    pub status_port: Vec<u8>,
    pub console: String,
    pub qemu_stderr: Vec<u8>,
    pub elapsed: Duration,
    /// When the status port's last bytes arrived, after spawning QEMU.
    pub status_arrived: Duration,
}

/// The process-wide signal that asked flint to stop, or 0.
pub(super) static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// From here on SIGINT, SIGTERM and SIGHUP stop the VM (and flint then exits 128+N)
/// instead of killing flint with its temporary directory left behind.
pub(super) fn take_signals() {
    // SAFETY: plain libc calls on a local signal set; the mask applies to this thread and
    // the threads it starts, and child processes get an empty mask from std.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        thread::spawn(move || loop {
            let mut signal = 0;
            if libc::sigwait(&set, &mut signal) == 0 {
                INTERRUPTED.store(signal, Ordering::SeqCst);
            }
        });
    }
}

/// Starts QEMU, connects the ports, pumps the streams and waits for the end.
pub(super) fn boot(
    vm: &Vm,
    listeners: Vec<UnixListener>,
    console_log: &Path,
    deadline: Option<Duration>,
    boot_timeout: Duration,
    verbose: bool,
) -> Result<Ending> {
    take_signals();
    let started = Instant::now();
    let mut child = vm
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let qemu_stderr = crate::qemu::drain(child.stderr.take().expect("piped"));
    let streams = match accept_all(&listeners, &mut child) {
        Ok(streams) => streams,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = qemu_stderr.join().ok().and_then(Result::ok).unwrap_or_default();
            let stderr = String::from_utf8_lossy(&stderr);
            let reason =
                stderr.lines().map(str::trim).find(|l| !l.is_empty()).map_or_else(|| error.to_string(), str::to_string);
            bail!("QEMU did not start: {reason}: check the options (--memory, --cpus, --machine) and the QEMU installation");
        }
    };
    let [stdin_port, stdout_port, stderr_port, status_port]: [UnixStream; 4] = streams.try_into().expect("four ports");

    // Kept open until the end: closing the socket (rather than only shutting down its sending
    // side) would make QEMU drop the connection along with input the guest has not read yet.
    let _stdin_keepalive = stdin_port.try_clone()?;
    thread::spawn(move || copy_stdin(stdin_port));
    let stdout_fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr_fd = std::io::stderr().as_fd().try_clone_to_owned()?;
    let outputs =
        [pump(stdout_port, std::fs::File::from(stdout_fd)), pump(stderr_port, std::fs::File::from(stderr_fd))];
    let heard = Arc::new(AtomicBool::new(false));
    let status = drain_timed(status_port, started, heard.clone());
    let tail = verbose.then(|| tail_console(console_log.to_path_buf()));

    let qemu = wait(&mut child, deadline, (boot_timeout, &heard), started)?;
    let elapsed = started.elapsed();
    for (reader, writer) in outputs {
        let _ = reader.join();
        let _ = writer.join();
    }
    let (status_port, status_arrived) = status.join().unwrap_or_default();
    if let Some((stop, handle)) = tail {
        let _ = stop.send(());
        let _ = handle.join();
    }
    Ok(Ending {
        qemu,
        status_port,
        console: String::from_utf8_lossy(&std::fs::read(console_log).unwrap_or_default()).replace('\r', ""),
        qemu_stderr: qemu_stderr.join().ok().and_then(Result::ok).unwrap_or_default(),
        elapsed,
        status_arrived,
    })
}

/// Accepts QEMU's connection on every listener (it connects to each while starting up).
pub(super) fn accept_all(listeners: &[UnixListener], child: &mut Child) -> Result<Vec<UnixStream>> {
    let mut streams: Vec<Option<UnixStream>> = listeners.iter().map(|_| None).collect();
    let start = Instant::now();
    while streams.iter().any(Option::is_none) {
        let mut progressed = false;
        for (listener, slot) in listeners.iter().zip(streams.iter_mut()) {
            if slot.is_none() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false)?;
                        *slot = Some(stream);
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if progressed {
            continue;
        }
        if let Some(status) = child.try_wait()? {
            bail!("QEMU exited ({status}) before connecting its ports");
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("QEMU did not connect its ports within 60 s");
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(streams.into_iter().map(Option::unwrap).collect())
}

/// Copies flint's stdin to the guest, then signals EOF by shutting down the sending side.
pub(super) fn copy_stdin(mut port: UnixStream) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if port.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = port.shutdown(std::net::Shutdown::Write);
}

/// Moves one output stream from its port to `out`. The socket is read by its own thread
/// into memory so QEMU never has to hold guest output back (output held back when the guest
/// powers off would be lost); a second thread writes it out.
pub(super) fn pump(mut port: UnixStream, mut out: std::fs::File) -> (JoinHandle<()>, JoinHandle<()>) {
    let (send, receive) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if send.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    let writer = thread::spawn(move || {
        let mut broken = false;
        for chunk in receive {
            // A closed pipe (`flint run ... | head`) ends the copying, not the workload.
            if !broken && out.write_all(&chunk).is_err() {
                broken = true;
            }
        }
    });
    (reader, writer)
}

/// Reads a stream to its end in a thread, also noting when (after `start`) the last bytes
/// arrived, and setting `heard` at the first.
pub(super) fn drain_timed(
    mut from: impl Read + Send + 'static,
    start: Instant,
    heard: Arc<AtomicBool>,
) -> JoinHandle<(Vec<u8>, Duration)> {
    thread::spawn(move || {
        let (mut data, mut arrived) = (Vec::new(), Duration::ZERO);
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            data.extend_from_slice(&chunk[..n]);
            arrived = start.elapsed();
            heard.store(true, Ordering::SeqCst);
        }
        (data, arrived)
    })
}

/// With `--verbose`, shows the console as it is written.
pub(super) fn tail_console(path: PathBuf) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut shown = 0usize;
        loop {
            let done = !matches!(stopped.recv_timeout(Duration::from_millis(50)), Err(mpsc::RecvTimeoutError::Timeout));
            if let Ok(data) = std::fs::read(&path) {
                if data.len() > shown {
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(&data[shown..]);
                    shown = data.len();
                }
            }
            if done {
                break;
            }
        }
    });
    (stop, handle)
}

/// Waits for QEMU to exit; stops it on a signal, at `deadline`, or at the boot timeout if
/// the flag (the init's ready line arrived) is not set by then.
pub(super) fn wait(
    child: &mut Child,
    deadline: Option<Duration>,
    (boot_timeout, ready): (Duration, &AtomicBool),
    started: Instant,
) -> Result<QemuEnd> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        if let Some(status) = child.wait_timeout(Duration::from_millis(50))? {
            let signal = INTERRUPTED.load(Ordering::SeqCst);
            return Ok(match (status.code(), status.signal()) {
                _ if signal != 0 => QemuEnd::Interrupted(signal),
                (Some(code), _) => QemuEnd::Exited(code),
                (None, Some(signal)) => QemuEnd::Signaled(signal),
                (None, None) => QemuEnd::Signaled(0),
            });
        }
        let signal = INTERRUPTED.load(Ordering::SeqCst);
        let late = deadline.is_some_and(|deadline| started.elapsed() > deadline);
        let stuck = started.elapsed() > boot_timeout && !ready.load(Ordering::SeqCst);
        if signal != 0 || late || stuck {
            // SIGTERM lets QEMU close down; SIGKILL if it does not within a second.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            if child.wait_timeout(Duration::from_secs(1))?.is_none() {
                let _ = child.kill();
            }
            child.wait()?;
            return Ok(match (signal, late) {
                (0, true) => QemuEnd::DeadlineKilled,
                (0, false) => QemuEnd::BootTimedOut,
                (signal, _) => QemuEnd::Interrupted(signal),
            });
        }
    }
}
