//! Opening the input: a file or standard input, a progress bar where one
//! helps, gzip and zstd recognised by their first bytes.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::{bail, Context};
use payments_engine::Verbosity;

use crate::app::Options;
use crate::sys::StoppableStdin;

/// Where the transactions come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

/// Progress bar redraws per second.
const PROGRESS_HZ: u8 = 4;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// What is known about the input besides its rows.
#[derive(Clone, Debug)]
pub struct InputFacts {
    /// The file (`None` for standard input).
    pub path: Option<PathBuf>,
    /// `plain`, `gzip` or `zstd`.
    pub format: &'static str,
    /// The file's size as stored (`None` for standard input).
    pub size: Option<u64>,
    /// Bytes of CSV read (after decompression).
    pub bytes_read: u64,
    /// Rows read (every row: applied, rejected or malformed).
    pub rows_read: u64,
    /// The file again, for parser threads to read by position: a plain
    /// file whose bytes no progress bar counts (`None` otherwise).
    pub file: Option<Arc<File>>,
}

/// Opens the input, wrapped in a progress bar where one is wanted (over the
/// bytes as stored, so a compressed file's bar is exact too) and in a
/// decompressor when its first bytes say gzip or zstd.
pub fn open_input(
    options: &Options,
    input: &Input,
    stop: &Arc<AtomicUsize>,
) -> anyhow::Result<(Opened, Option<indicatif::ProgressBar>)> {
    // The file again, for reads by position (`InputFacts::file`).
    let mut positional = None;
    let (source, len): (Box<dyn Read + Send>, Option<u64>) = match input {
        Input::Stdin => (Box::new(StoppableStdin::new(Arc::clone(stop))), None),
        Input::Path(path) => {
            let file = File::open(path)
                .with_context(|| format!("cannot open input {}", path.display()))?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                bail!(
                    "input {} is a directory; name a CSV file in it",
                    path.display()
                );
            }
            let len = file
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            // A file whose size says where it ends (files in /proc say 0).
            if len.is_some_and(|len| len > 0) {
                positional = file.try_clone().ok().map(Arc::new);
            }
            (Box::new(file), len)
        }
    };
    // A bar for a large file, a line of bytes and lines for a pipe (its size
    // is unknown); none for a small file, a quiet run, or a stderr that is
    // not a terminal.
    let shown = options.progress
        && options.verbosity != Verbosity::Quiet
        && io::stderr().is_terminal()
        && len.is_none_or(|len| len >= PROGRESS_MIN_BYTES);
    let (source, bar): (Box<dyn Read + Send>, _) = if shown {
        // A few redraws a second: each one wakes the terminal, which on a
        // small machine takes a core from the engine for a moment (perf.md,
        // "Progress bar").
        let target = indicatif::ProgressDrawTarget::stderr_with_hz(PROGRESS_HZ);
        let (bar, template) = match len {
            Some(len) => (
                indicatif::ProgressBar::with_draw_target(Some(len), target),
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => (
                indicatif::ProgressBar::with_draw_target(None, target),
                "{spinner} {bytes} read, {msg} lines, {bytes_per_sec}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template).expect("valid progress template"),
        );
        // The line count shows 0 until the first bytes arrive, never nothing.
        bar.set_message("0");
        let counted = CountLines {
            inner: source,
            bar: bar.clone(),
            lines: 0,
            count: len.is_none(),
        };
        (Box::new(counted), Some(bar))
    } else {
        (source, None)
    };
    let (source, format) = decompressed(source, &input_name(input))?;
    let file = positional.filter(|_| format == "plain" && bar.is_none());
    let facts = InputFacts {
        path: match input {
            Input::Path(path) => Some(path.clone()),
            Input::Stdin => None,
        },
        format,
        size: len,
        bytes_read: 0,
        rows_read: 0,
        file,
    };
    Ok(((source, facts), bar))
}

/// The input of a cluster run: a plain CSV file every process can read.
pub fn cluster_input(options: &Options) -> anyhow::Result<InputFacts> {
    let Input::Path(path) = &options.inputs[0] else {
        bail!("--cluster reads a file (every process reads the same one), not standard input");
    };
    let mut file =
        File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    let mut magic = Vec::with_capacity(6);
    (&mut file)
        .take(6)
        .read_to_end(&mut magic)
        .context("reading input")?;
    if format_of(&magic) != Format::Plain {
        bail!(
            "--cluster reads plain CSV files; {} is compressed: decompress it first",
            path.display()
        );
    }
    Ok(InputFacts {
        path: Some(path.clone()),
        format: "plain",
        size,
        bytes_read: size.unwrap_or(0),
        rows_read: 0,
        file: None,
    })
}

/// The input's path (a cluster run has one: [`cluster_input`] checked).
pub fn input_path(options: &Options) -> &Path {
    match &options.inputs[0] {
        Input::Path(path) => path,
        Input::Stdin => Path::new("-"),
    }
}

/// An opened input: its bytes, and what is known of it.
pub type Opened = (Box<dyn Read + Send>, InputFacts);

/// A reader that moves the progress bar by the bytes read and, for an input
/// of unknown size, shows the lines read so far.
struct CountLines {
    inner: Box<dyn Read + Send>,
    bar: indicatif::ProgressBar,
    lines: u64,
    count: bool,
}

impl Read for CountLines {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if self.count && n > 0 {
            self.lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            self.bar.set_message(self.lines.to_string());
        }
        Ok(n)
    }
}

/// The input as messages name it.
fn input_name(input: &Input) -> String {
    match input {
        Input::Stdin => "standard input".into(),
        Input::Path(path) => path.display().to_string(),
    }
}

/// What the first bytes of an input say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
    Zstd,
    /// A compressed or archive format this program does not read.
    Other(&'static str, &'static str),
}

/// The format of an input that starts with `magic` (its first 6 bytes, or
/// fewer if it is shorter).
fn format_of(magic: &[u8]) -> Format {
    const OTHERS: [(&[u8], &str, &str); 4] = [
        (b"BZh", "bzip2", "bzcat"),
        (b"\xFD7zXZ\x00", "xz", "xz -dc"),
        (b"PK\x03\x04", "zip", "unzip -p"),
        (b"7z\xBC\xAF\x27\x1C", "7z", "7z x -so"),
    ];
    if magic.starts_with(b"\x1F\x8B") {
        return Format::Gzip;
    }
    if magic.starts_with(b"\x28\xB5\x2F\xFD") {
        return Format::Zstd;
    }
    OTHERS
        .iter()
        .find(|(prefix, ..)| magic.starts_with(prefix))
        .map_or(Format::Plain, |&(_, name, tool)| Format::Other(name, tool))
}

/// `source`, decompressed if it is gzip or zstd (recognised by its magic
/// bytes, not its name); another compressed format is an error with a hint.
fn decompressed(
    mut source: Box<dyn Read + Send>,
    name: &str,
) -> anyhow::Result<(Box<dyn Read + Send>, &'static str)> {
    let mut magic = Vec::with_capacity(6);
    (&mut source)
        .take(6)
        .read_to_end(&mut magic)
        .context("reading input")?;
    let whole = io::Cursor::new(magic.clone()).chain(source);
    Ok(match format_of(&magic) {
        Format::Plain => (Box::new(whole), "plain"),
        Format::Gzip => (
            Box::new(flate2::bufread::MultiGzDecoder::new(
                io::BufReader::with_capacity(256 * 1024, whole),
            )),
            "gzip",
        ),
        Format::Zstd => (
            Box::new(
                zstd::stream::read::Decoder::new(whole)
                    .with_context(|| format!("starting to decompress {name}"))?,
            ),
            "zstd",
        ),
        Format::Other(format, tool) => bail!(
            "{name} is {format}-compressed; this program reads plain, gzip or zstd CSV: \
             decompress it first, for example `{tool} FILE | payments-engine -`"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_magic_bytes() {
        let table: &[(&[u8], Format)] = &[
            (b"type,client,tx,amount", Format::Plain),
            (b"", Format::Plain),
            (b"\x1F", Format::Plain),
            (b"\x1F\x8B\x08\x00", Format::Gzip),
            (b"\x28\xB5\x2F\xFD\x00", Format::Zstd),
            (b"BZh91AY", Format::Other("bzip2", "bzcat")),
            (b"\xFD7zXZ\x00", Format::Other("xz", "xz -dc")),
            (b"PK\x03\x04", Format::Other("zip", "unzip -p")),
        ];
        for &(magic, expected) in table {
            assert_eq!(format_of(magic), expected, "{magic:?}");
        }
    }

    #[test]
    fn gzip_and_zstd_read_as_the_plain_bytes() {
        let plain = b"type,client,tx,amount\ndeposit,1,1,1.5\n".repeat(1_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        for packed in [plain.clone(), gz, zst] {
            let mut out = Vec::new();
            decompressed(Box::new(io::Cursor::new(packed)), "x")
                .unwrap()
                .0
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == plain);
        }
    }
}
