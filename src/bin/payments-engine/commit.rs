//! The end of a run: everything written and synced to temporaries, then
//! committed in an order that never leaves a state a rerun would refuse.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use payments_engine::durable::{AtomicFile, Prepared, StateFile};
use payments_engine::{Finished, Malformed, Reject};

use crate::app::{Options, RunStats, SavedState};
use crate::input::{Input, InputFacts};

/// The next state, written and synced beside the state file.
pub struct Staged {
    pub prepared: Prepared,
    pub saved: SavedState,
    pub path: PathBuf,
}

/// What a run brings to its commit besides its result.
pub struct Ran {
    pub started: Instant,
    pub input: InputFacts,
    pub staged: Option<Staged>,
}

/// The output files a run writes, each a temporary until committed.
pub struct Outputs {
    rejects: Option<AtomicFile>,
    output: Option<AtomicFile>,
    summary: Option<AtomicFile>,
}

impl Outputs {
    /// Creates every output file the options name (a bad path fails here,
    /// before the input is read); the rejects file gets its header.
    pub fn create(options: &Options) -> anyhow::Result<Outputs> {
        let create = |path: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<AtomicFile>> {
            path.as_deref()
                .map(|path| {
                    AtomicFile::create(path)
                        .with_context(|| format!("cannot create {what} file {}", path.display()))
                })
                .transpose()
        };
        let mut rejects = create(&options.rejects, "rejects")?;
        if let Some(out) = rejects.as_mut() {
            out.write_all(payments_engine::REJECTS_HEADER.as_bytes())
                .with_context(|| format!("writing rejects file {}", out.target().display()))?;
        }
        Ok(Outputs {
            rejects,
            output: create(&options.output, "output")?,
            summary: create(&options.summary_json, "summary")?,
        })
    }

    /// Writes the diagnostics, the rejects file, the accounts and the
    /// summary, syncs them all, commits the files, delivers the accounts to
    /// stdout, and only then commits the state. Everything is written and
    /// synced before anything is committed; the accounts reach stdout only
    /// once the rejects file is in place; and the state moves on only once
    /// the accounts were delivered (written and flushed, to `-o` or
    /// stdout), so a failure on the way (a full disk, a reader gone) leaves
    /// the state as it was and the same command can run again.
    pub fn commit(
        mut self,
        options: &Options,
        finished: &mut Finished,
        ran: Ran,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> anyhow::Result<RunStats> {
        self.write(finished, stderr)?;
        let stats = RunStats {
            tally: *finished.tally(),
            elapsed: ran.started.elapsed(),
            account_count: finished.accounts().len(),
            measures: finished.measures().clone(),
            state: ran.staged.as_ref().map(|staged| staged.saved),
            input: InputFacts {
                bytes_read: finished.input_end().map_or(0, |end| end.offset),
                ..ran.input
            },
        };
        if let Some(out) = self.summary.as_mut() {
            let json = summary_json(options, &stats);
            serde_json::to_writer_pretty(&mut *out, &json)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.sync())
                .with_context(|| format!("writing summary file {}", written(out)))?;
        }
        for (out, what) in [
            (self.rejects, "rejects"),
            (self.output, "output"),
            (self.summary, "summary"),
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

    /// Writes the diagnostics (stderr and the rejects file) and the accounts
    /// file, and syncs both files.
    fn write(&mut self, finished: &mut Finished, stderr: &mut dyn Write) -> anyhow::Result<()> {
        if let Some(diagnostics) = finished.take_diagnostics() {
            let rejects = self.rejects.as_mut().map(|w| w as &mut dyn Write);
            diagnostics
                .write_to(stderr, rejects)
                .context("writing rejects file")?;
        }
        if let Some(out) = self.rejects.as_mut() {
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
    let input = &stats.input;
    json!({
        "version": 1,
        "input": {
            "path": match &options.input {
                Input::Stdin => Value::Null,
                Input::Path(path) => json!(path.display().to_string()),
            },
            "format": input.format,
            "size_bytes": input.size,
            "bytes_read": input.bytes_read,
        },
        "rows_read": tally.rows_read(),
        "applied": tally.applied,
        "rejected": tally.rejected(),
        "malformed": tally.malformed(),
        "rejected_by_reason": rejected,
        "malformed_by_reason": malformed,
        "accounts": stats.account_count,
        "elapsed_s": seconds,
        "rows_per_s": if seconds > 0.0 { tally.rows_read() as f64 / seconds } else { 0.0 },
        "workers": options.engine.worker_count(),
        "memory": {
            "state_bytes": m.state_bytes(),
            "account_bytes": m.account_bytes,
            "stored_deposits": m.deposits,
            "deposit_store_bytes": m.deposit_bytes,
            "tx_id_set_bytes": m.id_set_bytes,
            "peak_rss_bytes": peak_rss_bytes(),
        },
        "latency_us": latency,
        "state": stats.state.map(|saved| json!({
            "path": options.state.as_ref().map(|p| p.display().to_string()),
            "bytes": saved.bytes,
            "inputs": saved.inputs,
        })),
    })
}

/// The process's peak resident memory so far (Linux's VmHWM), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
