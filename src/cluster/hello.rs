//! What each side of a cluster connection says once authenticated: who it
//! is and what it runs with, checked against this process's own.

/// What each side of a connection says first: who it is and what it runs
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub(super) index: u64,
    pub(super) processes: u64,
    pub(super) workers: u64,
    pub(super) block: u64,
    pub(super) input_len: u64,
    /// Blocks between checkpoints (0: none).
    pub(super) every: u64,
    /// 1 with `--resume`.
    pub(super) resume: u64,
    /// The last two checkpoints every worker of the process completed (0:
    /// none).
    pub(super) last: u64,
    pub(super) prev: u64,
}

impl Hello {
    /// Its encoded length.
    pub(super) const LEN: usize = 9 * 8;

    pub(super) fn encode(&self) -> [u8; Hello::LEN] {
        let mut bytes = [0u8; Hello::LEN];
        let values = [
            self.index,
            self.processes,
            self.workers,
            self.block,
            self.input_len,
            self.every,
            self.resume,
            self.last,
            self.prev,
        ];
        for (chunk, value) in bytes.chunks_exact_mut(8).zip(values) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    pub(super) fn decode(bytes: &[u8]) -> Hello {
        let value = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap());
        Hello {
            index: value(0),
            processes: value(1),
            workers: value(2),
            block: value(3),
            input_len: value(4),
            every: value(5),
            resume: value(6),
            last: value(7),
            prev: value(8),
        }
    }

    /// Why `peer` cannot run with this process, if it cannot.
    pub(super) fn mismatch(&self, peer: &Hello) -> Option<String> {
        let settings = [
            ("a host file of processes", self.processes, peer.processes),
            ("--workers", self.workers, peer.workers),
            ("--block-size", self.block, peer.block),
            ("an input of bytes", self.input_len, peer.input_len),
            (
                "checkpoints every blocks (--state, --checkpoint-every)",
                self.every,
                peer.every,
            ),
            ("--resume (1) or not (0)", self.resume, peer.resume),
        ];
        let (what, mine, theirs) = settings.into_iter().find(|s| s.1 != s.2)?;
        Some(format!(
            "process {} runs with {what} {theirs}, process {} with {mine}: every process needs \
             the same host file, --workers, --block-size, --state settings and input",
            peer.index, self.index
        ))
    }
}
