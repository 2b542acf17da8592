//! The end of a run: everything written and synced to temporaries, then
//! committed in an order that never leaves a state a rerun would refuse.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use payments_engine::durable::{AtomicFile, Prepared, StateFile};
use payments_engine::{Finished, Malformed, Reject, Tally};

use crate::app::{Dest, Options, RunStats, SavedState};
use crate::input::InputFacts;

/// The next state, written and synced beside the state file.
pub struct Staged {
    pub prepared: Prepared,
    pub saved: SavedState,
    pub path: PathBuf,
}

/// What a run brings to its commit besides the last input's result.
pub struct Ran {
    pub started: Instant,
    /// Every input, in order.
    pub inputs: Vec<InputFacts>,
    /// The counts over every input.
    pub tally: Tally,
    pub staged: Option<Staged>,
}

/// Where an output goes: a temporary until committed, or stdout (`-`).
enum Sink {
    File(AtomicFile),
    Stdout,
}

impl Sink {
    fn into_file(self) -> Option<AtomicFile> {
        match self {
            Sink::File(file) => Some(file),
            Sink::Stdout => None,
        }
    }

    /// The writer, and what a failure to write to it was doing (`name`
    /// being what the sink holds: "rejects").
    fn writer<'a>(
        &'a mut self,
        stdout: &'a mut dyn Write,
        name: &str,
    ) -> (&'a mut dyn Write, String) {
        match self {
            Sink::File(file) => {
                let what = format!("writing {name} file {}", written(file));
                (file, what)
            }
            Sink::Stdout => (stdout, format!("writing {name} to stdout")),
        }
    }
}

/// The output files a run writes, each a temporary until committed.
pub struct Outputs {
    rejects: Option<Sink>,
    output: Option<AtomicFile>,
    summary: Option<Sink>,
    /// Several inputs: each rejects row starts with its input.
    several: bool,
    /// The rejects header is written (before the first rows).
    rejects_header: bool,
}

impl Outputs {
    /// Creates every output file the options name (a bad path fails here,
    /// before the input is read).
    pub fn create(options: &Options) -> anyhow::Result<Outputs> {
        let create = |path: &PathBuf, what: &str| -> anyhow::Result<AtomicFile> {
            AtomicFile::create(path)
                .with_context(|| format!("cannot create {what} file {}", path.display()))
        };
        let sink = |dest: &Option<Dest>, what: &str| -> anyhow::Result<Option<Sink>> {
            dest.as_ref()
                .map(|dest| match dest {
                    Dest::File(path) => create(path, what).map(Sink::File),
                    Dest::Stdout => Ok(Sink::Stdout),
                })
                .transpose()
        };
        Ok(Outputs {
            rejects: sink(&options.rejects, "rejects")?,
            output: options
                .output
                .as_ref()
                .map(|path| create(path, "output"))
                .transpose()?,
            summary: sink(&options.summary_json, "summary")?,
            several: options.several_inputs(),
            rejects_header: false,
        })
    }

    /// Writes one input's diagnostics: the per-row lines to `stderr`, every
    /// malformed or rejected row to the rejects file (or stdout), in line
    /// order. With several inputs (`label`), each stderr line names the
    /// input (`tue.csv:12: ...`) and each rejects row starts with it.
    pub fn write_diagnostics(
        &mut self,
        finished: &mut Finished,
        label: Option<&str>,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let Some(diagnostics) = finished.take_diagnostics() else {
            return Ok(());
        };
        self.write_rejects_header(stdout)?;
        let (mut rejects, what) = match self.rejects.as_mut() {
            Some(sink) => {
                let (out, what) = sink.writer(stdout, "rejects");
                (Some(out), what)
            }
            None => (None, String::new()),
        };
        let Some(label) = label else {
            return diagnostics.write_to(stderr, rejects).context(what);
        };
        let mut stderr = EachLine::new(stderr, |line: &[u8], out: &mut dyn Write| {
            match line.strip_prefix(b"line ") {
                Some(rest) => write!(out, "{label}:").and_then(|()| out.write_all(rest)),
                None => write!(out, "{label}: ").and_then(|()| out.write_all(line)),
            }
        });
        let quoted = csv_field(label);
        let mut rejects = rejects.take().map(|out| {
            EachLine::new(out, |line: &[u8], out: &mut dyn Write| {
                write!(out, "{quoted},").and_then(|()| out.write_all(line))
            })
        });
        let result = diagnostics.write_to(
            &mut stderr,
            rejects.as_mut().map(|out| out as &mut dyn Write),
        );
        // Diagnostics to stderr are best effort; the rejects are not.
        let _ = stderr.flush();
        result
            .and_then(|()| rejects.map_or(Ok(()), |mut out| out.flush()))
            .context(what)
    }

    /// The rejects file's header (with several inputs, led by `input,`),
    /// once.
    fn write_rejects_header(&mut self, stdout: &mut dyn Write) -> anyhow::Result<()> {
        let (Some(sink), false) = (self.rejects.as_mut(), self.rejects_header) else {
            return Ok(());
        };
        let (out, what) = sink.writer(stdout, "rejects");
        let input = if self.several { "input," } else { "" };
        write!(out, "{input}{}", payments_engine::REJECTS_HEADER).context(what)?;
        self.rejects_header = true;
        Ok(())
    }

    /// Writes the accounts file and the summary, syncs them all, commits the
    /// files, delivers the accounts to stdout, and only then commits the
    /// state. Everything is written and synced before anything is
    /// committed; the accounts reach stdout only once the rejects file is in
    /// place; and the state moves on only once the accounts were delivered
    /// (written and flushed, to `-o` or stdout), so a failure on the way (a
    /// full disk, a reader gone) leaves the state as it was and the same
    /// command can run again.
    pub fn commit(
        mut self,
        options: &Options,
        finished: &mut Finished,
        ran: Ran,
        stdout: &mut dyn Write,
    ) -> anyhow::Result<RunStats> {
        self.write_rejects_header(stdout)?;
        self.write(finished)?;
        let stats = RunStats {
            tally: ran.tally,
            elapsed: ran.started.elapsed(),
            account_count: finished.accounts().len(),
            measures: finished.measures().clone(),
            state: ran.staged.as_ref().map(|staged| staged.saved),
            inputs: ran.inputs,
        };
        let summary = |out: &mut dyn Write| -> io::Result<()> {
            serde_json::to_writer_pretty(&mut *out, &summary_json(options, &stats))
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
        };
        match self.summary.as_mut() {
            Some(Sink::File(out)) => summary(out)
                .and_then(|()| out.sync())
                .with_context(|| format!("writing summary file {}", written(out)))?,
            Some(Sink::Stdout) => summary(stdout)
                .and_then(|()| stdout.flush())
                .context("writing the summary to stdout")?,
            None => {}
        }
        let rejects_to_stdout = matches!(self.rejects, Some(Sink::Stdout));
        for (out, what) in [
            (self.rejects.and_then(Sink::into_file), "rejects"),
            (self.output, "output"),
            (self.summary.and_then(Sink::into_file), "summary"),
        ] {
            if let Some(out) = out {
                let path = written(&out);
                out.commit()
                    .with_context(|| format!("writing {what} file {path}"))?;
            }
        }
        if options.output.is_none() {
            match finished.write_accounts(BufWriter::with_capacity(256 * 1024, stdout)) {
                // `| head` without a state file: the reader has gone, and
                // nothing depends on what it did not read.
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe && ran.staged.is_none() => {
                }
                Err(error) => {
                    let kept = match &ran.staged {
                        Some(staged) => {
                            format!(" (state file {} left as it was)", staged.path.display())
                        }
                        None => String::new(),
                    };
                    return Err(error).context(format!("writing accounts to stdout{kept}"));
                }
                Ok(()) => {}
            }
        } else if rejects_to_stdout {
            stdout.flush().context("writing rejects to stdout")?;
        }
        if let Some(staged) = ran.staged {
            let path = &staged.path;
            staged
                .prepared
                .commit()
                .with_context(|| format!("writing state file {}", path.display()))?;
            let file = StateFile::new(path);
            file.discard_checkpoint()
                .with_context(|| format!("removing {}", file.checkpoint_path().display()))?;
            // A cluster's process 0 removes its checkpoints only now; the
            // other processes' go at their next start.
            if let Some(member) = &options.cluster {
                member
                    .discard_checkpoints(path)
                    .context("removing the cluster's checkpoint files")?;
            }
        }
        Ok(stats)
    }

    /// Syncs the rejects file, writes and syncs the accounts file.
    fn write(&mut self, finished: &Finished) -> anyhow::Result<()> {
        if let Some(Sink::File(out)) = self.rejects.as_mut() {
            out.sync()
                .with_context(|| format!("writing rejects file {}", written(out)))?;
        }
        if let Some(out) = self.output.as_mut() {
            finished
                .write_accounts(&mut *out)
                .and_then(|()| out.sync())
                .with_context(|| format!("writing output file {}", written(out)))?;
        }
        Ok(())
    }
}

/// A writer that hands each whole line (its `\n` included) to `edit`,
/// which writes it to the inner writer, changed; a last line without an
/// end goes at [`Write::flush`].
struct EachLine<'a, F> {
    out: &'a mut dyn Write,
    edit: F,
    partial: Vec<u8>,
}

impl<'a, F: FnMut(&[u8], &mut dyn Write) -> io::Result<()>> EachLine<'a, F> {
    fn new(out: &'a mut dyn Write, edit: F) -> Self {
        EachLine {
            out,
            edit,
            partial: Vec::new(),
        }
    }
}

impl<F: FnMut(&[u8], &mut dyn Write) -> io::Result<()>> Write for EachLine<'_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                (self.edit)(line, &mut *self.out)?;
            } else {
                self.partial.extend_from_slice(line);
                (self.edit)(&self.partial, &mut *self.out)?;
                self.partial.clear();
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            (self.edit)(&self.partial, &mut *self.out)?;
            self.partial.clear();
        }
        self.out.flush()
    }
}

/// `text` as one CSV field: quoted when it holds a comma, a quote or a
/// line end.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Where a file will appear, for messages.
fn written(file: &AtomicFile) -> String {
    file.target().display().to_string()
}

/// The `--summary-json` object. Its keys are documented in the README and
/// stay stable; new keys may be added.
pub fn summary_json(options: &Options, stats: &RunStats) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let tally = &stats.tally;
    let rejected: Map<String, Value> = Reject::ALL
        .iter()
        .map(|r| (r.code().to_string(), json!(tally.rejected_by[*r as usize])))
        .collect();
    let malformed: Map<String, Value> = Malformed::CODES
        .iter()
        .zip(tally.malformed_by)
        .map(|(code, n)| (code.to_string(), json!(n)))
        .collect();
    let seconds = stats.elapsed.as_secs_f64();
    let m = &stats.measures;
    let latency = m.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
        let us = |ns: u64| ns as f64 / 1_000.0;
        json!({
            "samples": h.len(),
            "p50": us(h.value_at_quantile(0.50)),
            "p90": us(h.value_at_quantile(0.90)),
            "p99": us(h.value_at_quantile(0.99)),
            "p99_9": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
        })
    });
    let input = |facts: &InputFacts| {
        json!({
            "path": facts.path.as_ref().map(|path| path.display().to_string()),
            "format": facts.format,
            "size_bytes": facts.size,
            "bytes_read": facts.bytes_read,
            "rows_read": facts.rows_read,
        })
    };
    let inputs: Vec<Value> = stats.inputs.iter().map(input).collect();
    let mut summary = json!({
        "version": 1,
        "program": {
            "name": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "commit": commit(),
        },
        "input": inputs.first().cloned().unwrap_or(Value::Null),
        "inputs": inputs,
        "rows_read": tally.rows_read(),
        "applied": tally.applied,
        "rejected": tally.rejected(),
        "malformed": tally.malformed(),
        "rejected_by_reason": rejected,
        "malformed_by_reason": malformed,
        "account_count": stats.account_count,
        "accounts": stats.account_count,
        "elapsed_s": seconds,
        "rows_per_s": if seconds > 0.0 { tally.rows_read() as f64 / seconds } else { 0.0 },
        "workers": options.engine.worker_count(),
        "cpu_s": process_cpu_s(),
        "cpu_by_role": cpu_by_role(),
        "memory": {
            "state_bytes": m.state_bytes(),
            "account_bytes": m.account_bytes,
            "stored_deposits": m.deposits,
            "deposit_store_bytes": m.deposit_bytes,
            "tx_id_set_bytes": m.id_set_bytes,
            "peak_rss_bytes": peak_rss_bytes(),
        },
        "state": stats.state.map(|saved| json!({
            "path": options.state.as_ref().map(|p| p.display().to_string()),
            "bytes": saved.bytes,
            "inputs": saved.inputs,
        })),
    });
    if options.latency {
        summary["latency_us"] = latency.unwrap_or(Value::Null);
    }
    summary
}

/// The commit this binary was built from (`527753c22`, `-dirty` when the
/// tree had changes), as `--version` says it; null outside a checkout.
fn commit() -> Option<&'static str> {
    let version = env!("PAYMENTS_ENGINE_VERSION");
    let (_, rest) = version.split_once(" (")?;
    rest.strip_suffix(')')
}

/// The process's CPU time so far (user + system, every thread), in seconds.
fn process_cpu_s() -> Option<f64> {
    // SAFETY: an all-zero rusage is valid, and getrusage only fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the call to fill in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Threads, CPU seconds and wait seconds (by kind) per role: this (the
/// calling) thread as `main`, then the reader, parsers and workers, each
/// charged as it ended.
fn cpu_by_role() -> serde_json::Value {
    use payments_engine::cpu::{self, Wait};
    use serde_json::{json, Map, Value};
    let entry = |threads: u64, cpu_s: Option<f64>, waits_s: [f64; 3]| {
        let mut entry = Map::new();
        entry.insert("threads".into(), json!(threads));
        entry.insert("cpu_s".into(), json!(cpu_s));
        for (kind, seconds) in Wait::ALL.iter().zip(waits_s) {
            entry.insert(format!("{}_wait_s", kind.name()), json!(seconds));
        }
        Value::Object(entry)
    };
    let mut roles = Map::new();
    let main = cpu::thread_ns().map(|ns| ns as f64 / 1e9);
    roles.insert("main".into(), entry(1, main, cpu::thread_waits_s()));
    for (role, spent) in cpu::by_role() {
        let waits = entry(spent.threads, Some(spent.cpu_s), spent.waits_s);
        roles.insert(role.name().into(), waits);
    }
    Value::Object(roles)
}

/// The process's peak resident memory so far (Linux's VmHWM), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
