//! Worker 0's last step: every worker's part in, the run's [`Finished`]
//! out, as a single-machine run would have it.

use std::io;
use std::path::Path;

use super::error::{bail, Error as ClusterError};

use super::input::{read_back, InputPlan, Part};
use super::options::Settings;
use crate::durable::state::{read_sections, KIND_STATE};
use crate::engine::{block_size_text, EarlyRows, Error, Finished};
use crate::ledger::{Book, Ledger};
use crate::parse::Position;
use crate::report::{EventLog, Outcome};
use crate::store::TxIdSet;

impl Shape {
    /// The `--verbose` line about the cluster.
    fn note(&self, block: u64) -> String {
        let Shape {
            processes,
            workers,
            start,
        } = *self;
        let block = block_size_text(block);
        let mut note =
            format!("cluster: {processes} processes x {workers} workers, blocks of {block}");
        if start > 0 {
            note.push_str(&format!(", resumed from the checkpoint at block {start}"));
        }
        note
    }
}

/// The cluster a run had, for `--verbose`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    pub(super) processes: usize,
    pub(super) workers: usize,
    /// The checkpoint block it went on from (0: the start).
    pub(super) start: u64,
}

/// Worker 0's view of every part: the run's result.
pub(super) fn gather(
    input_hash: Option<u128>,
    parts: Vec<Part>,
    (input, plan): (&Path, &InputPlan),
    settings: &Settings,
    shape: Shape,
    warn: &mut dyn FnMut(String),
) -> super::error::Result<Finished> {
    // The input ends at the first block that failed, as it would have in
    // one process.
    if let Some((_, text)) = parts.iter().filter_map(|p| p.error.clone()).min() {
        bail!("{text}");
    }
    // Lines per block (a block inside a long line has none and is not
    // listed), then the lines before each block.
    let mut before = vec![0u64; plan.blocks as usize];
    for &(k, lines) in parts.iter().flat_map(|p| &p.lines) {
        before[k as usize] = lines;
    }
    let mut sum = 0u64;
    for count in before.iter_mut() {
        (*count, sum) = (sum, sum + *count);
    }
    for text in parts.iter().flat_map(|p| p.warnings.iter()) {
        warn(text.clone());
    }
    // The first well-formed row: are the rows before it many and all
    // malformed, as a single run would warn?
    let first_ok = parts
        .iter()
        .flat_map(|p| &p.first_ok)
        .map(|&(k, line)| before[k as usize] + line)
        .min()
        .unwrap_or(u64::MAX);
    // (line, outcome, block, line within the block)
    let mut events: Vec<(u64, Outcome, u64, u64)> = Vec::new();
    let mut accounts = Vec::new();
    let (mut applied, mut deposits) = (0, 0);
    let mut states = Vec::new();
    for part in parts {
        states.push(part.state);
        for (k, line, outcome) in part.events {
            events.push((before[k as usize] + line, outcome, k, line));
        }
        accounts.extend(part.accounts);
        applied += part.applied;
        deposits += part.deposits;
    }
    events.sort_unstable_by_key(|event| event.0);
    if settings.strict {
        let first = events
            .iter()
            .find_map(|&(line, outcome, ..)| match outcome {
                Outcome::Malformed(reason) => Some((line, reason)),
                _ => None,
            });
        if let Some((line, reason)) = first {
            return Err(Error::Strict { line, reason }.into());
        }
    }
    // Every row before the first well-formed one is a malformed event, so
    // those events are the input's first rows, in order.
    let mut early = EarlyRows::default();
    for (line, outcome, ..) in events.iter().take_while(|e| e.0 < first_ok) {
        let Outcome::Malformed(reason) = outcome else {
            break;
        };
        if let Some(text) = early.see(*line, Some(reason)) {
            warn(text);
        }
        if !early.watching() {
            break;
        }
    }
    let mut log =
        EventLog::new(settings.verbosity, settings.keep_rejects).map_err(Error::CreateSpool)?;
    // The rejects file's lines, read back from the input (in file order,
    // as the events are).
    let raws = match settings.keep_rejects {
        true => {
            let at: Vec<(u64, u64)> = events.iter().map(|e| (e.2, e.3)).collect();
            read_back(input, *plan, &at)?
        }
        false => Vec::new(),
    };
    for (i, (line, outcome, ..)) in events.iter().enumerate() {
        let raw = raws.get(i).map_or(&[][..], Vec::as_slice);
        log.record(*line, *outcome, raw)
            .map_err(Error::WriteSpool)?;
    }
    log.tally.applied += applied;
    let notes = vec![shape.note(plan.block)];
    let mut end = Position {
        offset: plan.len,
        line: sum,
        prefix_hash: 0,
    };
    // With a state file: the whole ledger, and the input's identity (the
    // hash of all its bytes, as a single run records it).
    let state = match input_hash {
        Some(hash) => {
            end.prefix_hash = hash;
            Some(whole_ledger(&states)?)
        }
        None => None,
    };
    Ok(Finished::gathered(
        accounts,
        log,
        deposits as usize,
        notes,
        end,
        state,
    ))
}

/// The whole ledger from every worker's share (`Part::state`: its claimed
/// ids and its book, in the state file's sections), checked as a state
/// file's ledger is: the claimed ids, and the books of disjoint clients.
fn whole_ledger(states: &[Vec<u8>]) -> super::error::Result<(TxIdSet, Vec<Book>)> {
    let fail = |e: String| ClusterError::msg(format!("the cluster's ledger does not add up: {e}"));
    let mut ids = TxIdSet::default();
    let mut books = Vec::with_capacity(states.len());
    for bytes in states {
        let share = read_sections(&mut io::Cursor::new(bytes), KIND_STATE)
            .map_err(|e| fail(e.to_string()))?;
        ids.absorb(&share.ids);
        let book =
            Book::with_accounts(share.accounts, share.deposits).map_err(|e| fail(e.to_string()))?;
        books.push(book);
    }
    Ledger::validate_parts(&ids, &books).map_err(|e| fail(e.to_string()))?;
    Ok((ids, books))
}
