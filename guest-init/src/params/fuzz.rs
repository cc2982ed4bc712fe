//! Property tests of the command-line parsers with hostile input: random command lines up to
//! the 4 KiB the init reads, valid ones built from a spec (which must parse back to that
//! spec), and mutations of those. Whatever the input, parsing ends in parameters that keep
//! every documented limit, or in an error, never a panic.

use super::*;
use crate::argv::encode;
use proptest::prelude::*;
use proptest::sample::Index;

/// What a generated command line says, in owned form, to compare with what `parse` returns.
#[derive(Debug, Clone, Default, PartialEq)]
struct Expected {
    root: Option<(Option<Vec<u8>>, Vec<u8>, RootMode)>,
    modules: Vec<Vec<u8>>,
    argv: Vec<u8>,
    env: Option<Vec<u8>>,
    cwd: Vec<u8>,
    uid: u32,
    gid: u32,
    timeout_ms: Option<u64>,
    stdio: [Vec<u8>; 3],
    status: Option<Vec<u8>>,
    device_wait_ms: u64,
    firmware_tsc: Option<Vec<u8>>,
}

impl Expected {
    fn of(params: &Params<'_>) -> Expected {
        Expected {
            root: params.root.as_ref().map(|root| {
                let device = match root.device {
                    RootDevice::Path(path) => Some(path.to_vec()),
                    RootDevice::GptAuto => None,
                };
                (device, root.fstype.to_vec(), root.mode)
            }),
            modules: params.modules.iter().map(<[u8]>::to_vec).collect(),
            argv: params.argv.to_vec(),
            env: params.env.map(<[u8]>::to_vec),
            cwd: params.cwd.to_vec(),
            uid: params.uid,
            gid: params.gid,
            timeout_ms: params.timeout_ms,
            stdio: [params.stdin.to_vec(), params.stdout.to_vec(), params.stderr.to_vec()],
            status: params.status.map(<[u8]>::to_vec),
            device_wait_ms: params.device_wait_ms,
            firmware_tsc: params.firmware_tsc.map(<[u8]>::to_vec),
        }
    }
}

/// `key=value` as a command line word: quoted as a whole or in its value when it holds
/// spaces (and sometimes when it does not, which must make no difference).
fn word(key: &str, value: &str, quoting: u8) -> String {
    let spaced = value.bytes().any(is_space);
    match quoting % 3 {
        0 if !spaced => format!("{key}={value}"),
        1 => format!("\"{key}={value}\""),
        _ => format!("{key}=\"{value}\""),
    }
}

fn path() -> impl Strategy<Value = String> {
    "/[a-zA-Z0-9._/ \t-]{0,40}"
}

/// Seconds as the parameters take them, and the milliseconds they mean.
fn seconds() -> impl Strategy<Value = (String, u64)> {
    (0u64..100_000, prop::option::of("[0-9]{1,3}")).prop_map(|(whole, fraction)| match fraction {
        None => (whole.to_string(), whole * 1000),
        Some(fraction) => {
            let ms = whole * 1000 + fraction.parse::<u64>().unwrap() * 10u64.pow(3 - fraction.len() as u32);
            (format!("{whole}.{fraction}"), ms)
        }
    })
}

/// Words the kernel, QEMU or a user may add; none is flint's.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("console=ttyS0".to_string()),
        Just("quiet".to_string()),
        Just("virtio_mmio.device=512@0xfeb00e00:12".to_string()),
        Just("panic=-1".to_string()),
        Just("flint".to_string()),
        Just("flintx.argv=1".to_string()),
        Just("FLINT.argv=1".to_string()),
        Just("=flint.argv".to_string()),
        Just("init=\"/bin/a b\"".to_string()),
        "[a-z_]{1,10}(=[a-z0-9,.:@]{0,10})?",
    ]
}

/// A command line that must parse, as shuffled words, and what it says.
fn valid_cmdline() -> impl Strategy<Value = (String, Expected)> {
    let root =
        prop::option::of((prop::option::of("/dev/[a-z]{2,4}"), prop::option::of("[a-zA-Z0-9._-]{1,32}"), 0..5u8));
    let lists = (
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..12),
        prop::option::of(prop::collection::vec("[A-Z_]{1,8}=[ -~]{0,20}", 0..8)),
        prop::option::of(prop::collection::vec("[a-zA-Z0-9_-]{1,55}", 0..6)),
    );
    let numbers = (
        prop::option::of(0..u32::MAX),
        prop::option::of(0..u32::MAX),
        prop::option::of(seconds()),
        prop::option::of(seconds()),
        prop::option::of("[0-9,]{0,30}"),
    );
    let paths = (
        prop::option::of(path()),
        prop::option::of(path()),
        prop::option::of(path()),
        prop::option::of(path()),
        prop::option::of(path()),
    );
    let extra = (prop::collection::vec(noise(), 0..8), any::<u8>(), prop::option::of("[ -~]{0,30}"));
    (root, lists, numbers, paths, extra)
        .prop_map(
            |(root, (argv, env, modules), (uid, gid, timeout, rootwait, fwtsc), paths, (noise, quoting, tail))| {
                let mut words = noise;
                let mut expected = Expected { cwd: b"/".to_vec(), device_wait_ms: 5000, ..Expected::default() };
                let mut quote = quoting;
                let mut add = |words: &mut Vec<String>, key: &str, value: &str| {
                    quote = quote.rotate_left(1) ^ 0x5a;
                    words.push(word(key, value, quote));
                };
                if let Some((device, fstype, mode)) = root {
                    match &device {
                        Some(device) => add(&mut words, "flint.root", device),
                        None => add(&mut words, "flint.root", "gpt-auto"),
                    }
                    if let Some(fstype) = &fstype {
                        add(&mut words, "flint.rootfstype", fstype);
                    }
                    let (flags, mode): (&[&str], _) = match mode {
                        0 => (&[], RootMode::ReadOnly),
                        1 => (&["flint.ro"], RootMode::ReadOnly),
                        2 => (&["flint.rw"], RootMode::ReadWrite),
                        3 => (&["flint.overlay"], RootMode::Overlay),
                        _ => (&["flint.ro", "flint.overlay"], RootMode::Overlay),
                    };
                    words.extend(flags.iter().map(|flag| flag.to_string()));
                    let fstype = fstype.map_or(DEFAULT_FSTYPE.to_vec(), String::into_bytes);
                    expected.root = Some((device.map(String::into_bytes), fstype, mode));
                }
                let argv = encode(&argv).to_string();
                add(&mut words, "flint.argv", &argv);
                expected.argv = argv.into_bytes();
                if let Some(env) = env {
                    let env = encode(&env).to_string();
                    add(&mut words, "flint.env", &env);
                    expected.env = Some(env.into_bytes());
                }
                if let Some(modules) = modules {
                    add(&mut words, "flint.modules", &modules.join(","));
                    expected.modules = modules.into_iter().map(String::into_bytes).collect();
                }
                for (key, id, slot) in [("flint.uid", uid, &mut expected.uid), ("flint.gid", gid, &mut expected.gid)] {
                    if let Some(id) = id {
                        add(&mut words, key, &id.to_string());
                        *slot = id;
                    }
                }
                if let Some((text, ms)) = timeout {
                    add(&mut words, "flint.timeout", &text);
                    expected.timeout_ms = Some(ms).filter(|&ms| ms > 0);
                }
                if let Some((text, ms)) = rootwait {
                    add(&mut words, "flint.rootwait", &text);
                    expected.device_wait_ms = ms;
                }
                if let Some(fwtsc) = fwtsc {
                    add(&mut words, "flint.fwtsc", &fwtsc);
                    expected.firmware_tsc = Some(fwtsc.into_bytes());
                }
                let (cwd, stdin, stdout, stderr, status) = paths;
                if let Some(cwd) = cwd {
                    add(&mut words, "flint.cwd", &cwd);
                    expected.cwd = cwd.into_bytes();
                }
                for (i, (key, device)) in
                    [("flint.stdin", stdin), ("flint.stdout", stdout), ("flint.stderr", stderr)].into_iter().enumerate()
                {
                    expected.stdio[i] = match device {
                        Some(device) => {
                            add(&mut words, key, &device);
                            device.into_bytes()
                        }
                        None => CONSOLE.to_vec(),
                    };
                }
                if let Some(status) = status {
                    add(&mut words, "flint.status", &status);
                    expected.status = Some(status.into_bytes());
                }
                (words, tail, expected)
            },
        )
        .prop_flat_map(|(words, tail, expected)| (Just(words).prop_shuffle(), Just(tail), Just(expected)))
        .prop_map(|(words, tail, expected)| {
            let mut cmdline = words.join(" ");
            // What follows `--` is init's argv, never parameters.
            if let Some(tail) = tail {
                cmdline = format!("{cmdline} -- flint.bogus {tail}");
            }
            (cmdline, expected)
        })
}

/// Pieces mutations insert: what the tokenizer and the value parsers turn on.
const PIECES: [&str; 14] =
    ["\"", " ", "=", ",", ".", "/", "\0", "--", "flint.", "flint.argv=,", "flint.ro", "flint.root=/", "\t", "9"];

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Index, u8),
    Remove(Index, Index),
    Insert(Index, &'static str),
    /// A copy of a stretch of the line, elsewhere: repeated keys, split words.
    Duplicate(Index, Index, Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<Index>(), any::<Index>()).prop_map(|(at, len)| Mutation::Remove(at, len)),
        (any::<Index>(), prop::sample::select(PIECES.to_vec())).prop_map(|(at, piece)| Mutation::Insert(at, piece)),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(a, b, c)| Mutation::Duplicate(a, b, c)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(line: &mut Vec<u8>, mutation: &Mutation) {
    if line.is_empty() {
        line.push(b' ');
    }
    match mutation {
        Mutation::Replace(at, byte) => {
            let at = at.index(line.len());
            line[at] = *byte;
        }
        Mutation::Remove(at, len) => {
            let at = at.index(line.len());
            let len = len.index(line.len() - at).min(16);
            line.drain(at..at + len);
        }
        Mutation::Insert(at, piece) => {
            let at = at.index(line.len() + 1);
            line.splice(at..at, piece.bytes());
        }
        Mutation::Duplicate(from, len, to) => {
            let from = from.index(line.len());
            let len = len.index(line.len() - from).min(64);
            let copy = line[from..from + len].to_vec();
            let to = to.index(line.len() + 1);
            line.splice(to..to, copy);
        }
        Mutation::Truncate(at) => line.truncate(at.index(line.len())),
    }
}

/// Whether `inner` lies within `outer` (the parameters borrow from the command line).
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let range = outer.as_ptr_range();
    inner.is_empty() || (range.start <= inner.as_ptr() && inner.as_ptr_range().end <= range.end)
}

/// What every successful parse promises, whatever the input.
fn check_limits(params: &Params<'_>, cmdline: &[u8]) -> Result<(), TestCaseError> {
    let borrowed_or = |value: &[u8], default: &[u8]| within(value, cmdline) || value == default;
    let absolute = |value: &[u8]| value.first() == Some(&b'/') && value.len() < PATH_MAX && !value.contains(&0);
    for (value, default) in
        [(params.cwd, &b"/"[..]), (params.stdin, CONSOLE), (params.stdout, CONSOLE), (params.stderr, CONSOLE)]
    {
        prop_assert!(absolute(value) && borrowed_or(value, default), "{:?}", value);
    }
    if let Some(status) = params.status {
        prop_assert!(absolute(status) && within(status, cmdline));
    }
    // The status device is found alone too (for reporting other failures), and agrees.
    prop_assert_eq!(status_device(cmdline), params.status);
    if let Some(root) = &params.root {
        if let RootDevice::Path(device) = root.device {
            prop_assert!(absolute(device) && within(device, cmdline));
        }
        prop_assert!((1..=32).contains(&root.fstype.len()) && borrowed_or(root.fstype, DEFAULT_FSTYPE));
        prop_assert!(root.fstype.iter().all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(byte)));
    }
    for name in params.modules.iter() {
        prop_assert!((1..=MODULE_NAME_MAX).contains(&name.len()) && within(name, cmdline));
        prop_assert!(name.iter().all(|byte| byte.is_ascii_alphanumeric() || b"_-".contains(byte)));
    }
    prop_assert!(params.uid != u32::MAX && params.gid != u32::MAX);
    prop_assert_ne!(params.timeout_ms, Some(0));
    prop_assert!(within(params.argv, cmdline));
    for value in [params.env, params.firmware_tsc].into_iter().flatten() {
        prop_assert!(within(value, cmdline));
    }
    Ok(())
}

/// What every failure promises: a message for the console, status 120.
fn check_error(error: ParamError<'_>, cmdline: &[u8]) -> Result<(), TestCaseError> {
    if let ParamError::Unknown(key) = error {
        prop_assert!(key.starts_with(b"flint.") && within(key, cmdline));
    }
    let failure = error.failure();
    prop_assert_eq!(failure.status, status::BAD_PARAMETERS);
    prop_assert!(failure.message().iter().all(|&byte| byte.is_ascii_graphic() || byte == b' '));
    Ok(())
}

fn check(cmdline: &[u8]) -> Result<(), TestCaseError> {
    match Params::parse(cmdline) {
        Ok(params) => check_limits(&params, cmdline),
        Err(error) => check_error(error, cmdline),
    }
}

/// Module parameters as the command line gives them: (module, param, value).
fn module_words() -> impl Strategy<Value = Vec<(String, String, Option<String>)>> {
    let module = prop::sample::select(vec!["virtio_mmio", "virtio-mmio", "ext4", "m", "virtio", "virtio_blk"]);
    let value = prop::option::of("[a-z0-9@:.,=]{0,12}( [a-z0-9]{1,5}){0,2}");
    prop::collection::vec((module, "[a-z_][a-z0-9_]{0,10}", value), 0..24)
        .prop_map(|words| words.into_iter().map(|(module, param, value)| (module.to_string(), param, value)).collect())
}

fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

fn module_params_of(cmdline: &[u8], module: &str) -> Vec<u8> {
    let mut out = [0; CMDLINE_MAX];
    module_params(cmdline, module.as_bytes(), &mut out).to_bytes().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_command_lines_up_to_4_kib(cmdline in prop::collection::vec(any::<u8>(), 0..=CMDLINE_MAX)) {
        check(&cmdline)?;
    }

    #[test]
    fn random_words_from_the_parsers_alphabet(
        pieces in prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..400),
        with_argv in any::<bool>(),
    ) {
        let mut cmdline = pieces.concat();
        if with_argv {
            cmdline.push_str(" flint.argv=,");
        }
        check(cmdline.as_bytes())?;
    }

    /// A command line built from a spec parses back to exactly that spec.
    #[test]
    fn valid_command_lines_parse_to_what_they_say((cmdline, expected) in valid_cmdline()) {
        prop_assert!(cmdline.len() <= CMDLINE_MAX);
        let params = Params::parse(cmdline.as_bytes());
        prop_assert!(params.is_ok(), "{:?}: {:?}", cmdline, params);
        let params = params.unwrap();
        check_limits(&params, cmdline.as_bytes())?;
        prop_assert_eq!(Expected::of(&params), expected);
    }

    /// The same, mutated: a few bytes changed, dropped, inserted or repeated, the line cut.
    #[test]
    fn mutated_command_lines_parse_within_limits_or_fail_cleanly(
        (cmdline, _) in valid_cmdline(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let mut cmdline = cmdline.into_bytes();
        for mutation in &mutations {
            mutate(&mut cmdline, mutation);
        }
        check(&cmdline)?;
    }

    /// `<module>.<param>[=value]` words become that module's parameters, in order, `-` and
    /// `_` alike in its name; other words never do.
    #[test]
    fn module_parameters_are_the_modules_own_words(
        words in module_words(),
        noise in prop::collection::vec("[a-z_]{1,10}(=[a-z0-9,.:@]{0,10})?", 0..6),
        module in prop::sample::select(vec!["virtio_mmio", "virtio-mmio", "ext4", "m", "virtio", "virtio_blk", "x"]),
        quoting in any::<u8>(),
    ) {
        let mut line: Vec<String> = noise;
        let mut wanted = Vec::new();
        for (i, (name, param, value)) in words.iter().enumerate() {
            let key = format!("{name}.{param}");
            line.push(match value {
                Some(value) => word(&key, value, quoting.wrapping_add(i as u8)),
                None => key,
            });
            if same_module(name, module) {
                wanted.push(match value {
                    Some(value) if value.contains(' ') => format!("{param}=\"{value}\""),
                    Some(value) => format!("{param}={value}"),
                    None => param.clone(),
                });
            }
        }
        let cmdline = line.join(" ");
        let got = module_params_of(cmdline.as_bytes(), module);
        prop_assert_eq!(String::from_utf8(got).unwrap(), wanted.join(" "));
    }

    /// Hostile bytes and module names: a NUL-terminated string that fits, never a panic.
    #[test]
    fn module_parameters_from_any_bytes(
        cmdline in prop::collection::vec(any::<u8>(), 0..=2 * CMDLINE_MAX),
        pieces in prop::collection::vec(prop::sample::select(vec!["m.", "m.p", "=", "\"", " ", "a", "-", "_", "\0"]), 0..600),
        module in prop::collection::vec(prop::sample::select(b"m_-.a\0".to_vec()), 0..4),
    ) {
        for cmdline in [cmdline, pieces.concat().into_bytes()] {
            let got = module_params_of(&cmdline, "m");
            prop_assert!(got.len() < CMDLINE_MAX);
            let mut out = [0; CMDLINE_MAX];
            let got = module_params(&cmdline, &module, &mut out);
            prop_assert!(got.to_bytes().len() < CMDLINE_MAX);
        }
    }

    /// A valid command line's module list is what the loader iterates, names intact.
    #[test]
    fn module_lists_iterate_their_names(names in prop::collection::vec("[a-zA-Z0-9_-]{1,55}", 0..20)) {
        let cmdline = format!("flint.argv=, flint.modules={}", names.join(","));
        let params = Params::parse(cmdline.as_bytes()).unwrap();
        let listed: Vec<&[u8]> = params.modules.iter().collect();
        let names: Vec<&[u8]> = names.iter().map(String::as_bytes).collect();
        prop_assert_eq!(listed, names);
    }
}

#[test]
fn words_past_the_output_are_left_out_whole() {
    // Each word alone fits; together they do not: those that would overflow are skipped.
    let value = "v".repeat(CMDLINE_MAX / 3);
    let cmdline = format!("m.a={value} m.b={value} m.c={value} m.d=1");
    let got = String::from_utf8(module_params_of(cmdline.as_bytes(), "m")).unwrap();
    let words: Vec<&str> = got.split(' ').collect();
    assert_eq!(words.len(), 3, "{got}");
    assert_eq!(words[2], "d=1");
    assert!(words[..2].iter().all(|word| word.ends_with(&value)));
}
