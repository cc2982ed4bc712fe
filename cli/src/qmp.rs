//! A QEMU Machine Protocol client: just enough to save a VM's device state and load it back
//! (`run::warm`). QEMU's side is a `-chardev socket` that connects to a socket flint listens
//! on, like the virtio-serial ports.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The longest line flint takes from QEMU: replies to the few commands used are small, and a
/// compromised QEMU must not make flint read without end.
const LINE_MAX: u64 = 1 << 20;

/// How long one reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Takes QEMU's greeting on `stream` and leaves capabilities negotiation mode.
    pub fn start(stream: UnixStream) -> Result<Qmp> {
        let mut qmp = Qmp::greeted(stream)?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Takes QEMU's greeting on `stream`; the next command must be `qmp_capabilities`.
    pub fn greeted(stream: UnixStream) -> Result<Qmp> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let mut qmp = Qmp { writer: stream.try_clone()?, reader: BufReader::new(stream) };
        let greeting = qmp.line().context("no greeting from QEMU's monitor")?;
        if greeting.get("QMP").is_none() {
            bail!("QEMU's monitor did not greet as QMP does: {greeting}");
        }
        Ok(qmp)
    }

    /// Runs `command` and returns its result; QEMU's error as the error. Events that come
    /// meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        self.send(command, arguments)?;
        self.reply(command)
    }

    /// Sends `command` without waiting for its reply: QEMU runs commands in the order they
    /// came and answers each in turn, so a sequence costs one round trip ([`Qmp::replies`]).
    pub fn send(&mut self, command: &str, arguments: Value) -> Result<()> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}").with_context(|| format!("cannot send {command} to QEMU"))
    }

    /// Hands QEMU a copy of `fd` under `name` (`getfd`), for commands that take `fd:NAME`
    /// (QEMU 7.2 sends a migration only to a descriptor that came this way).
    pub fn pass_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.send_fd(name, fd)?;
        self.reply("getfd").map(drop)
    }

    /// [`Qmp::pass_fd`] without waiting for its reply (`getfd`'s, in [`Qmp::replies`]).
    pub fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let request = format!("{}\n", json!({ "execute": "getfd", "arguments": { "fdname": name } }));
        send_with_fd(&self.writer, request.as_bytes(), fd).context("cannot pass a file to QEMU")
    }

    /// The replies to the commands sent, in order; the first refusal as the error.
    pub fn replies(&mut self, commands: &[&str]) -> Result<()> {
        commands.iter().try_for_each(|command| self.reply(command).map(drop))
    }

    /// Waits for the event `name` (QEMU's `RESUME` once an incoming migration has loaded).
    pub fn event(&mut self, name: &str) -> Result<()> {
        loop {
            let message = self.line().with_context(|| format!("QEMU did not report {name}"))?;
            if message.get("event").and_then(Value::as_str) == Some(name) {
                return Ok(());
            }
        }
    }

    fn reply(&mut self, command: &str) -> Result<Value> {
        loop {
            let mut reply = self.line().with_context(|| format!("no reply from QEMU to {command}"))?;
            if let Some(result) = reply.get_mut("return") {
                return Ok(result.take());
            }
            if let Some(error) = reply.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("no description");
                bail!("QEMU refused {command}: {desc}");
            }
        }
    }

    fn line(&mut self) -> Result<Value> {
        let mut line = Vec::new();
        (&mut self.reader).take(LINE_MAX).read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(anyhow!("QEMU's monitor closed or sent a line longer than {LINE_MAX} bytes"));
        }
        Ok(serde_json::from_slice(&line)?)
    }
}

/// Sends `bytes` on `socket` with `fd` attached (SCM_RIGHTS).
fn send_with_fd(socket: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // Room for one descriptor's control message, aligned as cmsghdr needs.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer in it points into live locals for the call,
    // and the control message is written inside `control` (CMSG_SPACE(4) = 24 <= 32 bytes).
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        libc::CMSG_DATA(header).cast::<libc::c_int>().write_unaligned(fd.as_raw_fd());
        match libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) {
            sent if sent == bytes.len() as isize => Ok(()),
            -1 => Err(std::io::Error::last_os_error()),
            _ => Err(std::io::Error::other("the request went out in part")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// A fake QEMU answering with `replies`, one per line it reads after its greeting.
    fn fake(replies: &'static [&'static str]) -> Qmp {
        let (ours, theirs) = UnixStream::pair().unwrap();
        thread::spawn(move || {
            let mut reader = BufReader::new(theirs.try_clone().unwrap());
            let mut writer = theirs;
            writeln!(writer, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            for reply in replies {
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                writeln!(writer, "{reply}").unwrap();
            }
        });
        Qmp::start(ours).unwrap()
    }

    #[test]
    fn results_errors_and_events() {
        let mut qmp = fake(&[
            r#"{"return": {}}"#,
            r#"{"event": "RESUME", "timestamp": {}}
{"return": {"status": "running"}}"#,
            r#"{"error": {"class": "GenericError", "desc": "no such thing"}}"#,
        ]);
        assert_eq!(qmp.execute("query-status", json!({})).unwrap()["status"], "running");
        let error = qmp.execute("bogus", json!({})).unwrap_err().to_string();
        assert_eq!(error, "QEMU refused bogus: no such thing");
    }

    #[test]
    fn sent_in_a_row_answered_in_order() {
        let mut qmp = fake(&[
            r#"{"return": {}}"#,
            r#"{"return": {}}"#,
            r#"{"return": {}}"#,
            r#"{"error": {"class": "GenericError", "desc": "bad uri"}}"#,
        ]);
        qmp.send("a", json!({})).unwrap();
        qmp.send("b", json!({})).unwrap();
        qmp.send("c", json!({})).unwrap();
        assert_eq!(qmp.replies(&["a", "b", "c"]).unwrap_err().to_string(), "QEMU refused c: bad uri");
    }

    #[test]
    fn waits_for_an_event() {
        let mut qmp = fake(&[
            r#"{"return": {}}"#,
            r#"{"return": {}}
{"event": "STOP", "timestamp": {}}
{"event": "RESUME", "timestamp": {}}"#,
        ]);
        qmp.execute("migrate-incoming", json!({})).unwrap();
        qmp.event("RESUME").unwrap();
    }
}
