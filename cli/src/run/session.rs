//! One QEMU process: spawning it, wiring the virtio-serial ports to flint's stdio, relaying
//! signals, and collecting how it ended.
//!
//! The guest is untrusted, so flint's memory stays bounded whatever it sends: what of the
//! workload's output its reader has not taken yet waits in a few MiB of memory and then in a
//! capped file ([`output`]), and the status port, the console and QEMU's stderr are kept as a
//! [`Tail`].

use super::*;
use flint_guest_init::control::Message;
use output::{Limits, Overflow, Pump, LIMITS};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::ops::Deref;
use std::sync::Mutex;

mod output;

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
    /// A process serving the VM (a volume's virtiofsd) ended while the VM ran: its devices
    /// stop answering, so flint stopped the VM.
    HelperEnded,
}

/// What a finished VM left behind.
#[derive(Debug)]
pub struct Ending {
    pub qemu: QemuEnd,
    /// What arrived on the status port.
    pub status_port: Tail,
    /// COM1, as QEMU wrote it.
    pub console: Tail,
    pub qemu_stderr: Tail,
    pub elapsed: Duration,
    /// When the status port's last bytes arrived, after spawning QEMU.
    pub status_arrived: Duration,
    /// The output stream that passed `--max-output`, which stopped the workload.
    pub output_over: Option<&'static str>,
    /// For a VM restored from a warm snapshot: when things happened.
    pub restored: Option<Restored>,
}

/// How flint watches over one VM.
pub(super) struct Policy {
    /// When flint kills QEMU whatever the guest does.
    pub deadline: Option<Duration>,
    /// How long the kernel gets to start the init (its ready line).
    pub boot_timeout: Duration,
    /// How long the workload gets after a forwarded signal.
    pub grace: Duration,
    /// The most of stdout and of stderr passed on (`--max-output`).
    pub max_output: Option<u64>,
    pub verbose: bool,
}

/// The signal whose status (128 + 25) a workload stopped at `--max-output` ends with, as a
/// process past its file size limit does.
pub const OUTPUT_OVER_SIGNAL: i32 = libc::SIGXFSZ;

/// How much of the status port, the console and QEMU's stderr flint keeps: their last 64 KiB
/// (the status and timeline lines come last, and the end of a console says what went wrong).
pub const TAIL_MAX: usize = 64 * 1024;

/// The end of a stream the guest controls: its last [`TAIL_MAX`] bytes, and how long it was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tail {
    bytes: Vec<u8>,
    total: u64,
}

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.bytes.extend_from_slice(&data[data.len().saturating_sub(TAIL_MAX)..]);
        // Trimmed only at twice the size, so each byte is moved at most once on average.
        if self.bytes.len() > 2 * TAIL_MAX {
            self.bytes.drain(..self.bytes.len() - TAIL_MAX);
        }
    }

    /// The end of a file (the console log, once QEMU has exited).
    pub fn of_file(path: &Path) -> Tail {
        let read = || -> std::io::Result<Tail> {
            let mut file = File::open(path)?;
            let total = file.metadata()?.len();
            file.seek(SeekFrom::Start(total.saturating_sub(TAIL_MAX as u64)))?;
            let mut bytes = Vec::new();
            file.take(TAIL_MAX as u64).read_to_end(&mut bytes)?;
            Ok(Tail { bytes, total })
        };
        read().unwrap_or_default()
    }

    /// How many bytes came in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many bytes were dropped from the front.
    pub fn cut(&self) -> u64 {
        self.total - self.len() as u64
    }
}

impl Deref for Tail {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.bytes.len().saturating_sub(TAIL_MAX)..]
    }
}

/// The signals flint takes instead of dying of them: forwarded to the workload.
const TAKEN: [i32; 6] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// The signals flint has taken and not acted on yet, oldest first.
static SIGNALS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// How long the guest gets to end the VM itself after flint asked it to stop, before flint
/// kills QEMU (the init kills the workload, syncs and remounts the root: a second under KVM,
/// a few under TCG with much unwritten data).
const STOP_BACKSTOP: Duration = Duration::from_secs(10);

/// From here on the signals of [`TAKEN`] are queued in [`SIGNALS`] (for [`wait`] to forward
/// to the workload, or to stop the VM with) instead of killing flint with its temporary
/// directory left behind.
pub(super) fn take_signals() {
    static WAITER: std::sync::Once = std::sync::Once::new();
    // SAFETY: plain libc calls on a local signal set; the mask applies to this thread and
    // the threads it starts, and child processes get an empty mask from std.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in TAKEN {
            libc::sigaddset(&mut set, signal);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        WAITER.call_once(|| {
            thread::spawn(move || loop {
                let mut signal = 0;
                if libc::sigwait(&set, &mut signal) == 0 {
                    SIGNALS.lock().unwrap_or_else(|poison| poison.into_inner()).push(signal);
                }
            });
        });
    }
}

/// Takes the signals that arrived since the last call.
fn taken_signals() -> Vec<i32> {
    std::mem::take(&mut *SIGNALS.lock().unwrap_or_else(|poison| poison.into_inner()))
}

/// Starts QEMU, connects the ports, writes `job` (the job message, if the job goes over the
/// status port) first on the status port, pumps the streams and waits for the end, and for
/// the workload's output to have gone out. The output's spill files go beside the console
/// log, in the run's private directory. With `warm`, the VM is restored from a warm snapshot
/// first, or makes it on its way.
pub(super) fn boot(
    vm: &Vm,
    (listeners, mut job, warm): (Vec<UnixListener>, Option<JobText>, Option<warm::Start>),
    console_log: &Path,
    (policy, helpers): (&Policy, &mut [Running]),
) -> Result<Ending> {
    let verbose = policy.verbose;
    take_signals();
    let started = Instant::now();
    let mut child = vm.spawn(Stdio::null(), Stdio::null(), Stdio::piped())?;
    let qemu_stderr = drain_timed(child.stderr.take().expect("piped"), started, Arc::default());
    let failed = |child: Running, qemu_stderr: JoinHandle<(Tail, Duration)>, error: anyhow::Error| {
        drop(child);
        let (stderr, _) = qemu_stderr.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr);
        stderr.lines().map(str::trim).find(|l| !l.is_empty()).map_or_else(|| format!("{error:#}"), str::to_string)
    };
    let every: Vec<&UnixListener> = listeners.iter().chain(warm.as_ref().map(warm::Start::listener)).collect();
    let mut streams = match accept_all(&every, &mut child) {
        Ok(streams) => streams,
        Err(error) => {
            let reason = failed(child, qemu_stderr, error);
            bail!("QEMU did not start: {reason}: check the options (--memory, --cpus, --machine) and the QEMU installation");
        }
    };
    // The init of a restored VM said it was ready before its snapshot was taken.
    let heard = Arc::new(AtomicBool::new(false));
    let mut restored = None;
    match warm {
        Some(warm::Start::Restore(incoming)) => {
            let connected = started.elapsed();
            let monitor = streams.pop().expect("the monitor");
            if let Err(error) = incoming.load(monitor) {
                let reason = failed(child, qemu_stderr, error);
                bail!("cannot restore the warm snapshot: {reason}: remove the cache's warm/ directory to make it anew, or run without --warm");
            }
            let resumed = started.elapsed();
            let handed_over = match incoming.hand_over(streams.last().expect("the status port"), &mut child) {
                Ok(handed) => handed.then(|| started.elapsed()),
                Err(error) => {
                    let reason = failed(child, qemu_stderr, error);
                    bail!("the VM restored from the warm snapshot did not take fresh entropy and time: {reason}");
                }
            };
            heard.store(true, Ordering::SeqCst);
            restored = Some(Restored { connected, resumed, handed_over });
        }
        Some(warm::Start::Create(creation)) => {
            let monitor = streams.pop().expect("the monitor");
            // A workload's own snapshot holds its job: sent while it is made.
            let own = job.take_if(|_| creation.holds_job());
            if let Err(error) = creation.save(monitor, &streams, &mut child, own) {
                let reason = failed(child, qemu_stderr, error);
                show_console(&Tail::of_file(console_log));
                bail!("{reason}; the console is above (a cold run, without --warm, boots the same way)");
            }
            heard.store(true, Ordering::SeqCst);
        }
        None => {}
    }
    let [stdin_port, stdout_port, stderr_port, status_port]: [UnixStream; 4] = streams.try_into().expect("four ports");

    // Kept open until the end: closing the socket (rather than only shutting down its sending
    // side) would make QEMU drop the connection along with input the guest has not read yet.
    let _stdin_keepalive = stdin_port.try_clone()?;
    thread::spawn(move || copy_stdin(stdin_port));
    let stdout_fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let stderr_fd = std::io::stderr().as_fd().try_clone_to_owned()?;
    let limits = Limits { pass: policy.max_output, ..LIMITS };
    let overflow = Overflow::default();
    let outputs = [
        Pump::start(
            "stdout",
            stdout_port,
            File::from(stdout_fd),
            (console_log.with_file_name("stdout.spill"), limits),
            overflow.clone(),
        ),
        Pump::start(
            "stderr",
            stderr_port,
            File::from(stderr_fd),
            (console_log.with_file_name("stderr.spill"), limits),
            overflow.clone(),
        ),
    ];
    // The status port carries the host's messages the other way: first the job, then the
    // control messages (`control`), which wait until the job is all written. The guest reads
    // the job only once its port is open, so it is written by a thread of its own.
    let job_sent = Arc::new(AtomicBool::new(job.is_none()));
    if let Some(job) = job.map(|job| job.message()).transpose()? {
        let mut writer = status_port.try_clone()?;
        let sent = job_sent.clone();
        thread::spawn(move || {
            if writer.write_all(&job).is_ok() {
                sent.store(true, Ordering::SeqCst);
            }
        });
    }
    let status_writer = status_port.try_clone().ok();
    let status = drain_timed(status_port, started, heard.clone());
    let tail = verbose.then(|| tail_console(console_log.to_path_buf()));

    let stopping = Stopping::new(status_writer, policy.grace);
    let watch = Watch { ready: &heard, job_sent: &job_sent, overflow: &overflow, helpers };
    let qemu = wait(&mut child, policy, watch, started, stopping)?;
    let exited = Instant::now();
    let elapsed = exited - started;
    let warnings: Vec<String> = outputs.into_iter().filter_map(|pump| pump.finish(exited)).collect();
    for warning in warnings {
        eprintln!("flint: warning: {warning}");
    }
    let (status_port, status_arrived) = status.join().unwrap_or_default();
    if let Some((stop, handle)) = tail {
        let _ = stop.send(());
        let _ = handle.join();
    }
    let console = Tail::of_file(console_log);
    let (qemu_stderr, _) = qemu_stderr.join().unwrap_or_default();
    if verbose {
        for (name, tail) in [("status port", &status_port), ("console", &console), ("QEMU's stderr", &qemu_stderr)] {
            if tail.cut() > 0 {
                eprintln!(
                    "flint: the {name} carried {} bytes: flint kept only the last {} KiB",
                    tail.total(),
                    TAIL_MAX / 1024
                );
            }
        }
    }
    let output_over = overflow.get().copied();
    Ok(Ending { qemu, status_port, console, qemu_stderr, elapsed, status_arrived, output_over, restored })
}

/// Accepts QEMU's connection on every listener (it connects to each while starting up).
pub(super) fn accept_all(listeners: &[&UnixListener], child: &mut Child) -> Result<Vec<UnixStream>> {
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

/// Reads a stream to its end in a thread, keeping its [`Tail`] and noting when (after
/// `start`) the last bytes arrived, and setting `heard` at the first. Read as fast as it
/// comes: the init's status line is lost if QEMU still holds it when the VM ends.
pub(super) fn drain_timed(
    mut from: impl Read + Send + 'static,
    start: Instant,
    heard: Arc<AtomicBool>,
) -> JoinHandle<(Tail, Duration)> {
    thread::spawn(move || {
        let (mut tail, mut arrived) = (Tail::default(), Duration::ZERO);
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut chunk) {
            tail.push(&chunk[..n]);
            arrived = start.elapsed();
            heard.store(true, Ordering::SeqCst);
        }
        (tail, arrived)
    })
}

/// With `--verbose`, shows the console as it is written (read as it grows, a piece at a time).
pub(super) fn tail_console(path: PathBuf) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut log = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let done = !matches!(stopped.recv_timeout(Duration::from_millis(50)), Err(mpsc::RecvTimeoutError::Timeout));
            if log.is_none() {
                log = File::open(&path).ok();
            }
            if let Some(log) = &mut log {
                while let Ok(n @ 1..) = log.read(&mut buf) {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                }
            }
            if done {
                break;
            }
        }
    });
    (stop, handle)
}

/// How flint stops a running workload on its signals, as `docker run` and tini do: the
/// first is forwarded (and so are later ones), then the workload has the grace period to
/// end; at its end, or on a second SIGINT, the guest init is told to stop it (SIGKILL, a
/// clean root, status 128+N); if the VM has not ended [`STOP_BACKSTOP`] after that, or on a
/// third SIGINT, flint kills QEMU. Before the init is up, a signal kills QEMU at once.
pub(super) struct Stopping<W = UnixStream> {
    /// The host's side of the status port.
    port: Option<W>,
    grace: Duration,
    /// The first signal, and when it came.
    asked: Option<(i32, Instant)>,
    /// The signal the stop was asked for, and when.
    stop: Option<(i32, Instant)>,
}

impl<W: Write> Stopping<W> {
    pub(super) fn new(port: Option<W>, grace: Duration) -> Self {
        Stopping { port, grace, asked: None, stop: None }
    }

    /// Acts on `signal`; returns it if QEMU must be killed now (and flint exit 128+N).
    pub(super) fn on_signal(&mut self, signal: i32, ready: bool, now: Instant) -> Option<i32> {
        if !ready || self.port.is_none() {
            return Some(signal);
        }
        match (self.asked, self.stop) {
            (_, Some((stop, _))) => (signal == libc::SIGINT).then_some(stop),
            (None, None) => {
                self.asked = Some((signal, now));
                self.send(Message::Forward(signal as u8))
            }
            (Some(_), None) if signal == libc::SIGINT => self.stop(signal, now),
            (Some(_), None) => self.send(Message::Forward(signal as u8)),
        }
    }

    /// Asks for the stop once the grace period is over; returns the signal if QEMU must be
    /// killed now.
    pub(super) fn on_time(&mut self, now: Instant) -> Option<i32> {
        match (self.asked, self.stop) {
            (Some((signal, at)), None) if now.duration_since(at) >= self.grace => self.stop(signal, now),
            (_, Some((signal, at))) if now.duration_since(at) >= STOP_BACKSTOP => Some(signal),
            _ => None,
        }
    }

    /// Asks the init to stop the workload now (once); returns the signal if QEMU must be
    /// killed instead.
    pub(super) fn stop_now(&mut self, signal: i32, ready: bool, now: Instant) -> Option<i32> {
        match (ready && self.port.is_some(), self.stop) {
            (false, _) => Some(signal),
            (true, Some(_)) => None,
            (true, None) => self.stop(signal, now),
        }
    }

    fn stop(&mut self, signal: i32, now: Instant) -> Option<i32> {
        self.stop = Some((signal, now));
        self.send(Message::Stop(signal as u8))
    }

    /// Sends a message to the init; a port that is gone means the VM is ending anyway.
    fn send(&mut self, message: Message) -> Option<i32> {
        if let (Some(port), Some(byte)) = (&mut self.port, message.encode()) {
            let _ = port.write_all(&[byte]);
        }
        None
    }
}

/// What [`wait`] watches besides QEMU.
pub(super) struct Watch<'a> {
    /// The init's ready line arrived.
    ready: &'a AtomicBool,
    /// The job is all written on the status port.
    job_sent: &'a AtomicBool,
    /// An output stream passed `--max-output`.
    overflow: &'a Overflow,
    /// Processes the VM needs while it runs (the volumes' virtiofsd).
    helpers: &'a mut [Running],
}

/// How long QEMU gets to exit by itself after one of its helpers ended: they also end when
/// QEMU lets go of them on its way out.
const HELPER_GRACE: Duration = Duration::from_secs(1);

/// Waits for QEMU to exit; stops the workload on a signal (see [`Stopping`]) or when its
/// output passes `--max-output`, and QEMU at the policy's deadline, or at its boot timeout if
/// the init is not ready by then. Until the job is all written on the status port too, a
/// signal kills QEMU, as before the init is up: a control byte must not land in the job.
pub(super) fn wait(
    child: &mut Child,
    policy: &Policy,
    watch: Watch<'_>,
    started: Instant,
    mut stopping: Stopping,
) -> Result<QemuEnd> {
    use std::os::unix::process::ExitStatusExt;
    let mut helper_ended: Option<Instant> = None;
    loop {
        if let Some(status) = child.wait_timeout(Duration::from_millis(50))? {
            return Ok(match (status.code(), status.signal()) {
                (Some(code), _) => QemuEnd::Exited(code),
                (None, Some(signal)) => QemuEnd::Signaled(signal),
                (None, None) => QemuEnd::Signaled(0),
            });
        }
        let ready = watch.ready.load(Ordering::SeqCst);
        let listening = ready && watch.job_sent.load(Ordering::SeqCst);
        let mut signal = 0;
        for taken in taken_signals() {
            signal = stopping.on_signal(taken, listening, Instant::now()).unwrap_or(signal);
        }
        if watch.overflow.get().is_some() {
            signal = stopping.stop_now(OUTPUT_OVER_SIGNAL, listening, Instant::now()).unwrap_or(signal);
        }
        signal = stopping.on_time(Instant::now()).unwrap_or(signal);
        let late = policy.deadline.is_some_and(|deadline| started.elapsed() > deadline);
        let stuck = started.elapsed() > policy.boot_timeout && !ready;
        if helper_ended.is_none() && watch.helpers.iter_mut().any(|helper| !matches!(helper.try_wait(), Ok(None))) {
            helper_ended = Some(Instant::now());
        }
        let orphaned = helper_ended.is_some_and(|at| at.elapsed() > HELPER_GRACE);
        if signal != 0 || late || stuck || orphaned {
            // SIGTERM lets QEMU close down; SIGKILL if it does not within a second.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            if child.wait_timeout(Duration::from_secs(1))?.is_none() {
                let _ = child.kill();
            }
            child.wait()?;
            return Ok(match (signal, late, stuck) {
                (0, true, _) => QemuEnd::DeadlineKilled,
                (0, false, true) => QemuEnd::BootTimedOut,
                (0, false, false) => QemuEnd::HelperEnded,
                (signal, _, _) => QemuEnd::Interrupted(signal),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_forwarded_then_a_stop_is_asked_then_qemu_is_killed() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Before the init is up, or with no port: QEMU is killed at once.
        assert_eq!(Stopping::new(Some(Vec::new()), grace).on_signal(libc::SIGTERM, false, t0), Some(libc::SIGTERM));
        assert_eq!(Stopping::<Vec<u8>>::new(None, grace).on_signal(libc::SIGTERM, true, t0), Some(libc::SIGTERM));

        // Forwarded, then stopped when the grace period is over, then killed 10 s later.
        let mut stopping = Stopping::new(Some(Vec::new()), grace);
        assert_eq!(stopping.on_signal(libc::SIGTERM, true, t0), None);
        assert_eq!(stopping.on_signal(libc::SIGHUP, true, at(1)), None);
        assert_eq!(stopping.on_time(at(9)), None);
        assert_eq!(stopping.on_time(at(10)), None);
        assert_eq!(stopping.on_time(at(19)), None);
        assert_eq!(stopping.on_time(at(20)), Some(libc::SIGTERM));
        assert_eq!(stopping.port.unwrap(), [15, 1, 0x80 | 15]);

        // A second Ctrl-C asks for the stop at once; a third kills QEMU.
        let mut stopping = Stopping::new(Some(Vec::new()), grace);
        assert_eq!(stopping.on_signal(libc::SIGINT, true, t0), None);
        assert_eq!(stopping.on_signal(libc::SIGINT, true, at(1)), None);
        assert_eq!(stopping.on_signal(libc::SIGTERM, true, at(2)), None);
        assert_eq!(stopping.on_signal(libc::SIGINT, true, at(3)), Some(libc::SIGINT));
        assert_eq!(stopping.port.unwrap(), [2, 0x80 | 2]);
    }

    #[test]
    fn a_tail_keeps_the_last_bytes_of_any_flood() {
        let mut tail = Tail::default();
        let data: Vec<u8> = (0..10 * TAIL_MAX).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(1000).chain([&data[..3 * TAIL_MAX]]) {
            tail.push(piece);
            assert!(tail.bytes.len() <= 3 * TAIL_MAX);
        }
        assert_eq!(&tail[..], &data[2 * TAIL_MAX..3 * TAIL_MAX]);
        assert_eq!((tail.total(), tail.cut()), (13 * TAIL_MAX as u64, 12 * TAIL_MAX as u64));
    }

    #[test]
    fn a_tail_of_a_file_reads_only_its_end() {
        let path = std::env::temp_dir().join(format!("flint-tail-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * TAIL_MAX + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let tail = Tail::of_file(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&tail[..], &data[2 * TAIL_MAX + 5..]);
        assert_eq!(tail.cut(), 2 * TAIL_MAX as u64 + 5);
        assert_eq!(Tail::of_file(&path), Tail::default());
    }
}
