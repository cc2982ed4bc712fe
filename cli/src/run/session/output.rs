//! The workload's stdout or stderr on its way from its port to flint's: read as fast as QEMU
//! delivers it, and kept for a slower reader in memory, then in a spill file.
//!
//! Reading at QEMU's pace is what keeps the output whole: the guest init ends the VM as soon
//! as the workload has exited, and whatever QEMU had not yet taken from the guest's queue then
//! (because flint had stopped reading the port) is lost. flint stops reading only once the
//! spill file is at its cap (or cannot be written); then the guest waits for the reader, and
//! only then can the end be lost.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How much of one stream flint keeps for a reader that is behind.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// In memory, in chunks of [`CHUNK`] bytes (small reads fill a chunk together, so the
    /// bound holds whatever the sizes of the reads).
    pub memory: usize,
    /// In the spill file, once memory is full.
    pub spill: u64,
    /// The most of the stream passed on at all (`--max-output`); the rest is read and dropped.
    pub pass: Option<u64>,
}

/// 4 MiB in memory, then up to 1 GiB in a file in the run's temporary directory, per stream.
pub(super) const LIMITS: Limits = Limits { memory: 4 << 20, spill: 1 << 30, pass: None };

/// The most one read of the port takes, and the size of one chunk in memory.
const CHUNK: usize = 64 * 1024;

/// One output stream: one thread reads the port into a [`Buffer`], another writes what it
/// holds to flint's stdout or stderr at the reader's pace.
pub(super) struct Pump {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    buffer: Arc<Buffer>,
}

/// Set by a [`Pump`] whose stream passed its [`Limits::pass`]: the name of the stream.
pub(super) type Overflow = Arc<std::sync::OnceLock<&'static str>>;

impl Pump {
    /// `spill` names the spill file, made only when memory is full, in a private directory.
    /// `overflow` is set once the stream passes `limits.pass`.
    pub(super) fn start(
        name: &'static str,
        mut port: impl Read + Send + 'static,
        mut out: impl Write + Send + 'static,
        (spill, limits): (PathBuf, Limits),
        overflow: Overflow,
    ) -> Pump {
        let buffer = Arc::new(Buffer {
            name,
            state: Mutex::default(),
            filled: Condvar::new(),
            emptied: Condvar::new(),
            limits,
            path: spill,
        });
        let reader = thread::spawn({
            let buffer = buffer.clone();
            move || {
                let mut buf = vec![0u8; CHUNK];
                let mut allowed = limits.pass.unwrap_or(u64::MAX);
                loop {
                    match port.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            let keep = allowed.min(n as u64) as usize;
                            allowed -= keep as u64;
                            if keep > 0 {
                                buffer.push(&buf[..keep]);
                            }
                            if keep < n {
                                let _ = overflow.set(name);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                buffer.lock().ended = true;
                buffer.filled.notify_one();
            }
        });
        let writer = thread::spawn({
            let buffer = buffer.clone();
            move || loop {
                match buffer.next() {
                    Ok(Some(piece)) => {
                        // A closed pipe (`flint run ... | head`) ends the copying, not the
                        // workload: the port is still read, and the rest dropped.
                        if out.write_all(&piece).is_err() {
                            buffer.abandon(None);
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        buffer.abandon(Some(error));
                        break;
                    }
                }
            }
        });
        Pump { reader, writer, buffer }
    }

    /// Waits until the port has ended and everything has gone out (or the reader went away);
    /// a warning if part of the stream may be missing. That is when flint was holding the
    /// guest back at the spill cap when QEMU exited at `exited`: still, or shortly before (a
    /// slow reader makes room for one read at a time).
    pub(super) fn finish(self, exited: Instant) -> Option<String> {
        let _ = self.reader.join();
        let _ = self.writer.join();
        let name = self.buffer.name;
        let state = self.buffer.lock();
        if let Some(error) = &state.unread {
            return Some(format!(
                "flint could not read the workload's {name} back from its spill file ({error}): the rest of it is missing"
            ));
        }
        let held = !state.gone && state.held_until.is_some_and(|until| until + Duration::from_millis(100) >= exited);
        held.then(|| {
            let why = match &state.spill_error {
                Some(error) => format!("flint could not spill it to a file: {error}"),
                None => format!("{} MiB of it already waited in flint's spill file", self.buffer.limits.spill >> 20),
            };
            format!("the VM ended while the workload's {name} waited for a slow reader ({why}): the end of it may be missing")
        })
    }
}

/// What one stream holds between its port and its reader.
struct Buffer {
    name: &'static str,
    state: Mutex<State>,
    /// Signalled when there is more to write, or the port has ended.
    filled: Condvar,
    /// Signalled when there is room again, or the reader has gone away.
    emptied: Condvar,
    limits: Limits,
    path: PathBuf,
}

/// Memory first, then the file: all of memory's bytes came before the file's.
#[derive(Default)]
struct State {
    memory: VecDeque<Vec<u8>>,
    /// The spill file, unlinked as soon as it is made (it goes away with its last handle,
    /// however flint ends).
    file: Option<Arc<File>>,
    /// How far the file is written, and read. Both go back to 0 (and the file to empty) once
    /// the reader has caught up, so the file holds only what the reader is behind by.
    written: u64,
    read: u64,
    /// Why the file could not be written: from then on only memory is used.
    spill_error: Option<String>,
    /// Why the file could not be read back.
    unread: Option<io::Error>,
    /// The port has ended.
    ended: bool,
    /// The reader has gone away: what comes is dropped.
    gone: bool,
    /// When the port's reader last stopped waiting for room.
    held_until: Option<Instant>,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `data` (at most [`CHUNK`] bytes), waiting for room only when memory and the
    /// spill file are full.
    fn push(&self, data: &[u8]) {
        let (mut state, mut waited) = (self.lock(), false);
        while !state.gone {
            if state.store(data, self.limits, &self.path) {
                if waited {
                    state.held_until = Some(Instant::now());
                }
                self.filled.notify_one();
                return;
            }
            state = self.emptied.wait(state).unwrap_or_else(PoisonError::into_inner);
            waited = true;
        }
    }

    /// The next bytes for the reader, oldest first; `None` once the port has ended and all of
    /// it has gone out.
    fn next(&self) -> io::Result<Option<Vec<u8>>> {
        let mut state = self.lock();
        loop {
            if let Some(chunk) = state.memory.pop_front() {
                self.emptied.notify_one();
                return Ok(Some(chunk));
            }
            if state.read < state.written {
                break;
            }
            if state.ended {
                return Ok(None);
            }
            state = self.filled.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        // Read without the lock, so that the port is read meanwhile: the bytes from `read` to
        // `written` stay as they are until this thread empties the file.
        let (file, at) = (state.file.clone().expect("the file holds bytes"), state.read);
        let mut piece = vec![0; (state.written - at).min(CHUNK as u64) as usize];
        drop(state);
        file.read_exact_at(&mut piece, at)?;
        let mut state = self.lock();
        state.read += piece.len() as u64;
        if state.read == state.written {
            (state.read, state.written) = (0, 0);
            // Only frees the disk space: the file is written from 0 again either way.
            let _ = file.set_len(0);
            self.emptied.notify_one();
        }
        Ok(Some(piece))
    }

    /// The reader has gone away (or the file could not be read back): drop what is held and
    /// what comes, so the port keeps flowing.
    fn abandon(&self, unread: Option<io::Error>) {
        let mut state = self.lock();
        (state.gone, state.unread) = (true, unread);
        (state.memory, state.file) = (VecDeque::new(), None);
        self.emptied.notify_one();
    }
}

impl State {
    /// Keeps `data` in memory if nothing waits in the file and memory has room, else in the
    /// file if it has room; false if neither.
    fn store(&mut self, data: &[u8], limits: Limits, path: &Path) -> bool {
        if self.read == self.written {
            if let Some(last) = self.memory.back_mut().filter(|last| last.capacity() - last.len() >= data.len()) {
                last.extend_from_slice(data);
                return true;
            }
            if self.memory.len() < limits.memory / CHUNK {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.extend_from_slice(data);
                self.memory.push_back(chunk);
                debug_assert!(self.memory.iter().map(Vec::capacity).sum::<usize>() <= limits.memory);
                return true;
            }
        }
        if self.spill_error.is_some() || self.written + data.len() as u64 > limits.spill {
            return false;
        }
        match self.spill(data, path) {
            Ok(()) => true,
            Err(error) => {
                self.spill_error = Some(error.to_string());
                false
            }
        }
    }

    fn spill(&mut self, data: &[u8], path: &Path) -> io::Result<()> {
        let file = match &self.file {
            Some(file) => file,
            None => {
                let file = File::options().read(true).write(true).create_new(true).open(path)?;
                std::fs::remove_file(path)?;
                self.file.insert(Arc::new(file))
            }
        };
        file.write_all_at(data, self.written)?;
        self.written += data.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TempDir;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counting 32-bit numbers: a lost, repeated or misplaced piece shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u32 / 4).flat_map(u32::to_le_bytes).collect()
    }

    /// Writes `data` into a pump as fast as it takes it while a reader reads it through a pipe,
    /// sleeping 2 ms after each read (of up to 64 KiB); what the reader got, how much of it it had when the writing
    /// was done, and the pump's warning.
    fn through(data: &[u8], limits: Limits, dir: &Path) -> (Vec<u8>, u64, Option<String>) {
        let (port, mut guest) = io::pipe().unwrap();
        let (mut reader, out) = io::pipe().unwrap();
        let pump = Pump::start("stdout", port, out, (dir.join("stdout.spill"), limits), Overflow::default());
        let taken = Arc::new(AtomicU64::new(0));
        let slow = thread::spawn({
            let taken = taken.clone();
            move || {
                let (mut got, mut buf) = (Vec::new(), vec![0u8; CHUNK]);
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                    taken.fetch_add(n as u64, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(2));
                }
                got
            }
        });
        guest.write_all(data).unwrap();
        drop(guest);
        let taken_when_written = taken.load(Ordering::SeqCst);
        let warning = pump.finish(Instant::now());
        (slow.join().unwrap(), taken_when_written, warning)
    }

    #[track_caller]
    fn assert_same(got: &[u8], data: &[u8]) {
        assert!(
            got == data,
            "{} bytes of {}, differing from byte {:?}",
            got.len(),
            data.len(),
            first_difference(got, data)
        );
    }

    #[test]
    fn a_slow_reader_gets_every_byte_in_order_without_holding_the_writer_back() {
        let dir = TempDir::new("flint-output-test").unwrap();
        let data = pattern(20 << 20);
        let (got, taken_when_written, warning) =
            through(&data, Limits { memory: 1 << 20, spill: 1 << 30, pass: None }, dir.path());
        assert_same(&got, &data);
        // The writer was done long before the reader: the rest waited in memory and the file.
        assert!(taken_when_written < data.len() as u64 / 2, "the reader had {taken_when_written} bytes");
        assert_eq!(warning, None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spill file is left");
    }

    #[test]
    fn past_the_spill_cap_the_writer_waits_and_nothing_is_lost() {
        let dir = TempDir::new("flint-output-test").unwrap();
        let data = pattern(8 << 20);
        let (got, _, warning) = through(&data, Limits { memory: 256 << 10, spill: 1 << 20, pass: None }, dir.path());
        assert_same(&got, &data);
        let warning = warning.expect("held back at the cap");
        assert!(warning.contains("1 MiB of it already waited in flint's spill file"), "{warning}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spill file is left");
    }

    #[test]
    fn when_the_reader_goes_away_the_port_is_still_read_to_its_end() {
        let dir = TempDir::new("flint-output-test").unwrap();
        let (port, mut guest) = io::pipe().unwrap();
        let (reader, out) = io::pipe().unwrap();
        drop(reader);
        let pump = Pump::start("stdout", port, out, (dir.path().join("stdout.spill"), LIMITS), Overflow::default());
        guest.write_all(&pattern(20 << 20)).unwrap();
        drop(guest);
        assert_eq!(pump.finish(Instant::now()), None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spill file is left");
    }

    #[test]
    fn past_max_output_the_rest_is_read_and_dropped() {
        let dir = TempDir::new("flint-output-test").unwrap();
        let data = pattern(3 << 20);
        let (port, mut guest) = io::pipe().unwrap();
        let (mut reader, out) = io::pipe().unwrap();
        let overflow = Overflow::default();
        let limits = Limits { pass: Some(1_000_001), ..LIMITS };
        let pump = Pump::start("stderr", port, out, (dir.path().join("stderr.spill"), limits), overflow.clone());
        let got = thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        // All of it is taken from the port: the guest is never held back.
        guest.write_all(&data).unwrap();
        drop(guest);
        assert_eq!(pump.finish(Instant::now()), None);
        assert_same(&got.join().unwrap(), &data[..1_000_001]);
        assert_eq!(overflow.get(), Some(&"stderr"));
        // Exactly the limit passes whole.
        let (got, _, _) = through(&data, Limits { pass: Some(data.len() as u64), ..LIMITS }, dir.path());
        assert_same(&got, &data);
    }

    fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
        a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then(|| a.len().min(b.len())))
    }
}
