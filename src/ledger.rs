//! The ledger: SPEC's rules as a single-threaded state machine, and the
//! ledger's state as a value. No I/O, no threads, no allocation per
//! transaction beyond the growth of its tables.
//!
//! # Check, then write
//!
//! `apply` follows TigerBeetle's `create_transfer`: every precondition is
//! checked in SPEC's order and returns its own [`Reject`]; the new balances are
//! computed with checked arithmetic into a copy of the account; only after the
//! last possible rejection is ruled out does any state change (the account,
//! then the one write to the deposit store the rule calls for). A rejected
//! transaction leaves no trace but the account that SPEC rule 1 creates and
//! the tx id that rule 2 claims.
//!
//! # One state, split for workers
//!
//! The state is split in two so that the sharded pipeline can reuse it:
//! [`TxIdSet`] holds the one rule that needs global file order (rule 2, tx ids
//! are global across clients), and [`Book`] holds everything that is per
//! client (accounts and their deposits). A [`Ledger`] is the two together, and
//! it is also the ledger's whole state as a value: [`Ledger::split`] cuts it
//! into the claimed ids and one book per worker (by [`shard`]),
//! [`Ledger::merge`] puts the parts back, [`Ledger::accounts`],
//! [`Ledger::deposits`] and [`Ledger::claimed_ids`] iterate it in a fixed
//! order, and [`Ledger::from_parts`] rebuilds it from those iterations,
//! checking that they are consistent. None of this depends on a worker count:
//! split for any count and merged, a ledger iterates exactly as before.

use std::fmt;

use crate::amount::Amount;
use crate::store::{ClientTable, Deposit, DepositStore, TxIdSet};
use crate::tx::{ClientId, Kind, Tx, TxId};

/// Why a well-formed transaction was not applied. One variant per SPEC
/// reason; the declaration order is the order of the rejects-file reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Reject {
    /// Rule 2: a deposit or withdrawal reused a claimed tx id.
    DuplicateTx,
    /// Rule 3: the account is locked by an earlier chargeback.
    AccountLocked,
    /// Rule 5: a withdrawal larger than the available funds.
    InsufficientFunds,
    /// Rules 6-8: the tx is not an applied deposit of this client.
    UnknownTx,
    /// Rule 6: the deposit is already under dispute.
    AlreadyDisputed,
    /// Rules 7-8: the deposit is not under dispute.
    NotDisputed,
    /// A balance would leave the amount range.
    Overflow,
}

impl Reject {
    /// Every reason, in declaration order.
    pub const ALL: [Reject; 7] = [
        Reject::DuplicateTx,
        Reject::AccountLocked,
        Reject::InsufficientFunds,
        Reject::UnknownTx,
        Reject::AlreadyDisputed,
        Reject::NotDisputed,
        Reject::Overflow,
    ];

    /// The SPEC reason code used in the rejects file.
    pub fn code(self) -> &'static str {
        match self {
            Reject::DuplicateTx => "duplicate_tx",
            Reject::AccountLocked => "account_locked",
            Reject::InsufficientFunds => "insufficient_funds",
            Reject::UnknownTx => "unknown_tx",
            Reject::AlreadyDisputed => "already_disputed",
            Reject::NotDisputed => "not_disputed",
            Reject::Overflow => "overflow",
        }
    }

    /// The reason in words, for stderr.
    pub fn describe(self) -> &'static str {
        match self {
            Reject::DuplicateTx => "duplicate tx id",
            Reject::AccountLocked => "account locked",
            Reject::InsufficientFunds => "insufficient funds",
            Reject::UnknownTx => "unknown tx",
            Reject::AlreadyDisputed => "already disputed",
            Reject::NotDisputed => "not disputed",
            Reject::Overflow => "overflow",
        }
    }

    /// A short explanation for the rejects file's `detail` column.
    pub fn detail(self, tx: &Tx) -> String {
        match self {
            Reject::DuplicateTx => {
                format!("tx {} was already used by a deposit or withdrawal", tx.tx)
            }
            Reject::AccountLocked => format!("client {} is locked by a chargeback", tx.client),
            Reject::InsufficientFunds => {
                format!("withdrawal of {} exceeds the available funds", tx.amount)
            }
            Reject::UnknownTx => format!(
                "tx {} is not an applied deposit of client {}",
                tx.tx, tx.client
            ),
            Reject::AlreadyDisputed => format!("tx {} is already under dispute", tx.tx),
            Reject::NotDisputed => format!("tx {} is not under dispute", tx.tx),
            Reject::Overflow => "a balance would leave the amount range".to_string(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for Reject {}

/// One client's balances. `total` is derived: always `available + held`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Account {
    pub available: Amount,
    pub held: Amount,
    pub locked: bool,
}

impl Account {
    /// `available + held`. The ledger never stores an account whose total
    /// leaves the range, so this cannot fail for an account it returns.
    pub fn total(&self) -> Amount {
        self.available
            .checked_add(self.held)
            .expect("ledger invariant: total fits the amount range")
    }
}

/// The worker that owns `client` among `workers` (>= 1). Fibonacci hashing
/// spreads clients that share a residue (every id a multiple of the worker
/// count, say) evenly; the hash's top 32 bits are scaled to the worker
/// count by a multiply and a shift, not a division (the router's `div` was
/// 16% of its per-row time: perf.md, "Parsing on every core").
#[inline]
pub fn shard(client: ClientId, workers: usize) -> usize {
    shard_key(u32::from(client), workers)
}

/// [`shard`] for any 32-bit key: the cluster places tx ids with it too.
#[inline]
pub(crate) fn shard_key(key: u32, parts: usize) -> usize {
    let hash = u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((hash >> 32) * parts as u64) >> 32) as usize
}

/// The one write a rule makes to the deposit store once every check passed.
/// Without a payload: a dispute flag carried in the variant took nine
/// instructions a row to take apart (callgrind, `--workers 0`).
enum DepositWrite {
    None,
    Store,
    Dispute,
    Undispute,
}

/// How many records ahead the paths call [`Book::prefetch`] (the account,
/// the deposit store's chunk header) on the records they are about to
/// apply, and half as far its `deep` stage (the chunk's entries: see
/// `DepositStore::prefetch`). One distance for every path.
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// Accounts and their applied deposits: every rule except the global tx-id
/// claim. A worker of the sharded pipeline owns one `Book` for its clients.
#[derive(Clone, Default)]
pub struct Book {
    accounts: ClientTable<Account>,
    deposits: DepositStore,
    /// Applied deposits - applied withdrawals - charged back amounts, modulo
    /// 2^64: what the accounts' totals must add up to.
    net: i64,
}

impl Book {
    /// Starts loading the memory that applying `tx` will read: its
    /// account (see [`ClientTable::prefetch`] for `deep`), its deposit (see
    /// [`DepositStore::prefetch`] for `deep`), and where a deposit will be
    /// stored when `inserts`; a hint with no effect on the outcome.
    #[inline]
    pub fn prefetch(&self, tx: &Tx, deep: bool, inserts: bool) {
        self.accounts.prefetch(tx.client, deep);
        let reads = !tx.kind.claims_id();
        if reads || (inserts && tx.kind == Kind::Deposit) {
            self.deposits.prefetch(tx.tx, deep);
        }
    }

    /// Applies a well-formed transaction. `id_is_fresh` is the outcome of
    /// rule 2's claim for deposits and withdrawals (ignored for the others).
    ///
    /// # Panics
    ///
    /// If a deposit or withdrawal's amount is not positive: the parser never
    /// produces one, and [`Engine::submit`](crate::engine::Engine::submit)
    /// refuses one, so this is a bug in the caller, caught in release builds
    /// too.
    ///
    /// Inlined into every path's loop: a call kept six registers' pushes
    /// and pops and the result's spill per row (`--workers 0`: 196.7 ->
    /// 176.4 instructions a row for the apply loop, callgrind, perf.md).
    /// The first two checks join their conditions with `&`, not `&&`: one
    /// branch on the result, not one on the kind (which files mix) first.
    #[inline(always)]
    pub fn apply(&mut self, tx: &Tx, id_is_fresh: bool) -> Result<(), Reject> {
        let claims = tx.kind.claims_id();
        if claims & !tx.amount.is_positive() {
            not_positive(tx);
        }
        // Rule 1: every well-formed record creates its client's account.
        let account = self.accounts.get_or_default(tx.client);
        // Rule 2.
        if claims & !id_is_fresh {
            return Err(Reject::DuplicateTx);
        }
        // Rule 3.
        if account.locked {
            return Err(Reject::AccountLocked);
        }
        // Check: the new account, the total it moves by SPEC's rules, and the
        // write to the deposit store, all computed without changing anything.
        let (next, total_change, write) = match tx.kind {
            // Rule 4.
            Kind::Deposit => {
                let available = account
                    .available
                    .checked_add(tx.amount)
                    .ok_or(Reject::Overflow)?;
                let next = Account {
                    available,
                    ..*account
                };
                (next, tx.amount.raw(), DepositWrite::Store)
            }
            // Rule 5.
            Kind::Withdrawal => {
                if account.available < tx.amount {
                    return Err(Reject::InsufficientFunds);
                }
                let available = account
                    .available
                    .checked_sub(tx.amount)
                    .ok_or(Reject::Overflow)?;
                let next = Account {
                    available,
                    ..*account
                };
                (next, -tx.amount.raw(), DepositWrite::None)
            }
            // Rule 6.
            Kind::Dispute => {
                let deposit = self.deposits.get(tx.tx).filter(|d| d.client == tx.client);
                let deposit = deposit.ok_or(Reject::UnknownTx)?;
                if deposit.disputed {
                    return Err(Reject::AlreadyDisputed);
                }
                let next = Account {
                    available: account
                        .available
                        .checked_sub(deposit.amount)
                        .ok_or(Reject::Overflow)?,
                    held: account
                        .held
                        .checked_add(deposit.amount)
                        .ok_or(Reject::Overflow)?,
                    locked: false,
                };
                (next, 0, DepositWrite::Dispute)
            }
            // Rules 7 and 8.
            Kind::Resolve | Kind::Chargeback => {
                let deposit = self.deposits.get(tx.tx).filter(|d| d.client == tx.client);
                let deposit = deposit.ok_or(Reject::UnknownTx)?;
                if !deposit.disputed {
                    return Err(Reject::NotDisputed);
                }
                let held = account
                    .held
                    .checked_sub(deposit.amount)
                    .ok_or(Reject::Overflow)?;
                let (next, total_change) = if tx.kind == Kind::Resolve {
                    let available = account
                        .available
                        .checked_add(deposit.amount)
                        .ok_or(Reject::Overflow)?;
                    let next = Account {
                        available,
                        held,
                        locked: false,
                    };
                    (next, 0)
                } else {
                    let next = Account {
                        available: account.available,
                        held,
                        locked: true,
                    };
                    (next, -deposit.amount.raw())
                };
                (next, total_change, DepositWrite::Undispute)
            }
        };
        // The last possible rejection: total = available + held must fit.
        checked_total(&next)?;

        // Write. Invariants first, on in release builds (cost measured in
        // perf.md): held never negative, and the total moved by exactly what
        // the rule says (compared modulo 2^64: cheap, and exact for any real
        // bug).
        let moved = (next.available.raw().wrapping_sub(account.available.raw()))
            .wrapping_add(next.held.raw().wrapping_sub(account.held.raw()));
        if moved != total_change || next.held.is_negative() {
            invariant_broken(tx, account, next.available, next.held, next.locked);
        }
        match write {
            DepositWrite::None => {}
            DepositWrite::Store => self.deposits.insert(tx.tx, tx.client, tx.amount),
            DepositWrite::Dispute => self.deposits.set_disputed(tx.tx, true),
            DepositWrite::Undispute => self.deposits.set_disputed(tx.tx, false),
        }
        self.net = self.net.wrapping_add(total_change);
        overwrite(account, &next);
        Ok(())
    }

    /// Checks, at the end of a run, that money is conserved: the totals of
    /// all accounts add up to applied deposits - withdrawals - chargebacks,
    /// every total is available + held, and no held is negative. Panics
    /// (a bug, not bad input) otherwise.
    pub fn check_invariants(&self) {
        let mut sum: i64 = 0;
        for (client, account) in self.accounts.iter() {
            assert!(
                !account.held.is_negative(),
                "ledger invariant: client {client} holds a negative amount"
            );
            sum = sum.wrapping_add(account.total().raw());
        }
        assert_eq!(sum, self.net, "ledger invariant: money is not conserved");
    }

    /// All accounts, in client order.
    pub fn accounts(&self) -> impl Iterator<Item = (ClientId, &Account)> + '_ {
        self.accounts.iter()
    }

    /// The applied-deposit store (for memory figures).
    pub fn deposits(&self) -> &DepositStore {
        &self.deposits
    }

    /// Bytes held by the accounts table (for memory figures).
    pub fn account_bytes(&self) -> usize {
        self.accounts.allocation_size()
    }

    /// A book from stores read back from a file (a cluster worker's
    /// checkpoint): no client twice, every account in range, every deposit
    /// of a known client, every held amount the sum of its client's
    /// disputed deposits. The tx ids are another worker's share, so they
    /// are not checked here ([`Ledger::validate`] checks them for a whole
    /// ledger).
    #[cfg(feature = "cluster")]
    pub(crate) fn from_stores(
        accounts: impl IntoIterator<Item = (ClientId, Account)>,
        deposits: DepositStore,
    ) -> Result<Book, StateError> {
        let book = Book::with_accounts(accounts, deposits)?;
        validate(&book, None)?;
        Ok(book)
    }

    /// A book holding `deposits` and `accounts`, each client once and in
    /// range; not validated further.
    pub(crate) fn with_accounts(
        accounts: impl IntoIterator<Item = (ClientId, Account)>,
        deposits: DepositStore,
    ) -> Result<Book, StateError> {
        let mut book = Book {
            deposits,
            ..Book::default()
        };
        for (client, account) in accounts {
            if book.accounts.contains(client) {
                return Err(StateError::ClientTwice(client));
            }
            if account.held.is_negative() || checked_total(&account).is_err() {
                return Err(StateError::BadAccount(client));
            }
            book.restore_account(client, account);
        }
        Ok(book)
    }

    /// The accounts of `clients` (each at most once) and the deposits of
    /// `ids` (ascending, each at most once) as they are now, those there
    /// are: what a cluster checkpoint that saves only changes holds.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn part_of(
        &self,
        clients: impl IntoIterator<Item = ClientId>,
        ids: impl IntoIterator<Item = TxId>,
    ) -> Book {
        let mut part = Book::default();
        for client in clients {
            if let Some(&account) = self.accounts.get(client) {
                part.restore_account(client, account);
            }
        }
        for id in ids {
            if let Some(deposit) = self.deposits.get(id) {
                part.deposits.restore(id, deposit);
            }
        }
        part
    }

    /// Lays `changes` ([`Book::part_of`] a later state of this book) over
    /// it: their accounts replace these, their deposits are added or take
    /// their dispute flag (a deposit's client and amount never change).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn overlay(&mut self, changes: &Book) {
        for (client, &account) in changes.accounts.iter() {
            let before = self.accounts.insert(client, account);
            let before = before.map_or(0, |account| account.total().raw());
            self.net = self
                .net
                .wrapping_sub(before)
                .wrapping_add(account.total().raw());
        }
        for (id, deposit) in changes.deposits.iter() {
            match self.deposits.get(id) {
                Some(_) => self.deposits.set_disputed(id, deposit.disputed),
                None => self.deposits.restore(id, deposit),
            }
        }
    }

    /// [`Ledger::validate`]'s checks on this book alone.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), StateError> {
        validate(self, None)
    }

    /// Adds an account and its deposits taken from another book or a saved
    /// state: `net` follows, so the conservation check holds.
    fn restore_account(&mut self, client: ClientId, account: Account) {
        let previous = self.accounts.insert(client, account);
        assert!(previous.is_none(), "client {client} restored twice");
        self.net = self.net.wrapping_add(account.total().raw());
    }
}

/// A deposit or withdrawal without a positive amount reached the ledger.
#[cold]
#[inline(never)]
fn not_positive(tx: &Tx) -> ! {
    panic!(
        "ledger precondition: a {} amount must be positive: {tx:?}",
        tx.kind.name()
    );
}

/// A ledger invariant failed: a bug, never bad input. The account after is
/// passed field by field, in registers: by reference, it was stored to the
/// stack on every row for this call that never comes (callgrind).
#[cold]
#[inline(never)]
fn invariant_broken(tx: &Tx, before: &Account, available: Amount, held: Amount, locked: bool) -> ! {
    let after = Account {
        available,
        held,
        locked,
    };
    panic!("ledger invariant broken by {tx:?}: {before:?} -> {after:?}");
}

/// SPEC rule 2, the one rule that needs the whole file's order: a deposit's
/// or withdrawal's tx id is claimed by the first well-formed record that
/// uses it, whatever its client and whether or not the record is then
/// applied. True when `tx` makes the claim (its id was free); false for a
/// repeat and for disputes, resolves and chargebacks, which claim nothing.
/// Every path claims through here, in file order, before the record's
/// [`Book::apply`].
#[inline]
pub(crate) fn claim(ids: &mut TxIdSet, tx: &Tx) -> bool {
    tx.kind.claims_id() && ids.claim(tx.tx)
}

/// `*account = next`, field by field: the plain assignment was compiled as
/// a copy through the stack, two 8-byte stores read back by one 16-byte
/// load that waited for them (a store-forwarding stall: `perf annotate` put
/// 15% of `Book::apply`'s samples there; field by field, it took 5.6%
/// fewer, the rest moving to the account's cache miss, perf.md).
#[inline(always)]
fn overwrite(account: &mut Account, next: &Account) {
    account.available = next.available;
    account.held = next.held;
    account.locked = next.locked;
}

/// The accounts of `books` (disjoint sets of clients) sorted by client id:
/// the output order, for one book or one per worker.
pub fn sorted_accounts<'a>(books: impl IntoIterator<Item = &'a Book>) -> Vec<(ClientId, Account)> {
    let mut accounts: Vec<_> = books
        .into_iter()
        .flat_map(|book| book.accounts().map(|(client, account)| (client, *account)))
        .collect();
    accounts.sort_unstable_by_key(|&(client, _)| client);
    accounts
}

fn checked_total(account: &Account) -> Result<Amount, Reject> {
    account
        .available
        .checked_add(account.held)
        .ok_or(Reject::Overflow)
}

/// The whole ledger: rule 2's global tx ids plus a book of accounts and
/// deposits. It is both the
/// single-threaded state machine ([`Ledger::apply`]) and the ledger's state
/// as a value, which the engine starts from and hands back, and which can be
/// split for workers, merged, iterated and rebuilt (see the module docs).
#[derive(Default)]
pub struct Ledger {
    ids: TxIdSet,
    book: Book,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// The accounts it holds.
    pub fn account_count(&self) -> usize {
        self.book.accounts.len()
    }

    /// The deposits it keeps for disputes.
    pub fn deposit_count(&self) -> usize {
        self.book.deposits().len()
    }

    /// Applies one well-formed transaction, checking SPEC's rules in order.
    ///
    /// # Panics
    ///
    /// If a deposit or withdrawal's amount is not positive: the parser and
    /// [`Engine::submit`](crate::Engine::submit) turn such a record into a
    /// malformed one before it gets here.
    pub fn apply(&mut self, tx: Tx) -> Result<(), Reject> {
        self.apply_ref(&tx)
    }

    /// Starts loading the memory that applying `tx` will read (its id's
    /// claim, its deposit): a hint with no effect on the outcome. `deep` as
    /// in [`Book::prefetch`]; `scattered` from [`Ledger::inserts_scattered`],
    /// asked once a batch: then where a deposit goes is loaded too, and
    /// the claim in two stages (see `TxIdSet::prefetch`). Without it the
    /// claim is not prefetched at all: ids come ascending, and their claim
    /// word is the one the last claim wrote. Asking `TxIdSet::prefetch`
    /// anyway (which returns at once for an id near the last) cost 9.5
    /// instructions a row (callgrind, `--workers 0`, 1M rows: 509.8M ->
    /// 500.2M without it).
    #[inline]
    pub(crate) fn prefetch(&self, tx: &Tx, deep: bool, scattered: bool) {
        if scattered && tx.kind.claims_id() {
            self.ids.prefetch(tx.tx, deep);
        }
        self.book.prefetch(tx, deep, scattered);
    }

    /// Whether deposits come with scattered ids, so that where they will be
    /// stored is worth prefetching (`DepositStore::scattered`). Deposits
    /// stored in id order, the common case, go where the last one went,
    /// in cache already.
    pub(crate) fn inserts_scattered(&self) -> bool {
        self.book.deposits.scattered()
    }

    /// [`Ledger::apply`] on a borrowed record: the engine's paths pass the
    /// parser's record in place (copying it measured slower, perf.md).
    #[inline]
    pub(crate) fn apply_ref(&mut self, tx: &Tx) -> Result<(), Reject> {
        let id_is_fresh = claim(&mut self.ids, tx);
        self.book.apply(tx, id_is_fresh)
    }

    /// Claims the ids of a batch at once where those that claim one (its
    /// deposits and withdrawals) come with consecutive ascending ids, as
    /// in the realistic file: as one range, a bitset word at a time
    /// (`TxIdSet::claim_range`), the outcome rule 2 gives them one by one
    /// in file order. Returns whether it did; then the ids of the range
    /// claimed before are in `repeated` (ascending), and each record is
    /// applied with [`Ledger::apply_claimed`]. Otherwise (the first id that
    /// breaks the run ends the look) nothing is claimed, and each record is
    /// applied with [`Ledger::apply_ref`].
    pub(crate) fn claim_run(&mut self, txs: &[Tx], repeated: &mut Vec<TxId>) -> bool {
        repeated.clear();
        let Some(first) = txs.iter().find(|tx| tx.kind.claims_id()) else {
            return true;
        };
        // Whether any claim breaks the run, found without a branch a row
        // (the run is the common case; the whole batch is looked at).
        let (mut next, mut breaks) = (first.tx, false);
        for tx in txs {
            let claims = tx.kind.claims_id();
            breaks |= claims & (tx.tx != next);
            next = next.wrapping_add(u32::from(claims));
        }
        let last = next.wrapping_sub(1);
        // A run past the largest id would wrap to 0.
        if breaks || last < first.tx {
            return false;
        }
        self.ids.claim_range(first.tx, last, repeated);
        true
    }

    /// [`Ledger::apply_ref`] for a record whose id [`Ledger::claim_run`]
    /// claimed: fresh unless it is among `repeated`.
    #[inline]
    pub(crate) fn apply_claimed(&mut self, tx: &Tx, repeated: &[TxId]) -> Result<(), Reject> {
        let id_is_fresh = repeated.is_empty() || repeated.binary_search(&tx.tx).is_err();
        self.book.apply(tx, id_is_fresh)
    }

    /// Checks the end-of-run invariants: every account's total is its
    /// available plus held, and no amount overflowed. Panics if not (a bug).
    pub fn check_invariants(&self) {
        self.book.check_invariants();
    }

    /// All accounts sorted by client id: the output order.
    pub fn sorted_accounts(&self) -> Vec<(ClientId, Account)> {
        sorted_accounts([&self.book])
    }

    /// Every account with its locked flag, in ascending client order.
    pub fn accounts(&self) -> impl Iterator<Item = (ClientId, Account)> {
        self.sorted_accounts().into_iter()
    }

    /// Every applied deposit with its client, amount and dispute flag, in
    /// ascending tx-id order.
    pub fn deposits(&self) -> impl Iterator<Item = (TxId, Deposit)> + '_ {
        self.book.deposits.iter()
    }

    /// Every claimed tx id (SPEC rule 2), ascending.
    pub fn claimed_ids(&self) -> impl Iterator<Item = TxId> + '_ {
        self.ids.iter()
    }

    /// The claimed ids and the book, borrowed (the state file writes them).
    pub(crate) fn parts(&self) -> (&TxIdSet, Vec<&Book>) {
        (&self.ids, vec![&self.book])
    }

    /// Splits the ledger for `workers` (>= 1) workers: the claimed ids, which
    /// the router keeps, and one [`Book`] per worker holding the accounts and
    /// deposits of the clients that [`shard`] gives it.
    pub(crate) fn split(self, parts: usize) -> (TxIdSet, Vec<Book>) {
        assert!(parts >= 1, "at least one part");
        if parts == 1 {
            return (self.ids, vec![self.book]);
        }
        let to = |client| shard(client, parts);
        (self.ids, redistribute(&[self.book], parts, to))
    }

    /// Puts split parts back together: the claimed ids and books holding
    /// disjoint sets of clients (from [`Ledger::split`] or the workers of a
    /// run).
    pub(crate) fn merge(ids: TxIdSet, books: Vec<Book>) -> Ledger {
        let mut books = books;
        if books.len() == 1 {
            let book = books.pop().expect("one book");
            return Ledger { ids, book };
        }
        let mut merged = redistribute(&books, 1, |_| 0);
        let book = merged.pop().expect("one book");
        Ledger { ids, book }
    }

    /// Rebuilds a ledger from its three iterations ([`Ledger::accounts`],
    /// [`Ledger::deposits`], [`Ledger::claimed_ids`]), in any order, checking
    /// that they describe a state the rules can reach ([`Ledger::validate`]),
    /// and that no client, deposit or id appears twice.
    pub fn from_parts(
        accounts: impl IntoIterator<Item = (ClientId, Account)>,
        deposits: impl IntoIterator<Item = (TxId, Deposit)>,
        claimed_ids: impl IntoIterator<Item = TxId>,
    ) -> Result<Ledger, StateError> {
        let mut ids = TxIdSet::default();
        // The empty set's ids are unclaimed, so a failed claim is a repeat.
        for id in claimed_ids {
            if !ids.claim(id) {
                return Err(StateError::IdTwice(id));
            }
        }
        let mut store = DepositStore::default();
        for (id, deposit) in deposits {
            if !deposit.amount.is_positive() {
                return Err(StateError::BadDeposit(id));
            }
            if store.get(id).is_some() {
                return Err(StateError::DepositTwice(id));
            }
            store.restore(id, deposit);
        }
        Ledger::from_stores(ids, accounts, store)
    }

    /// A ledger from its stores, read back from a state file or rebuilt from
    /// parts: no client twice, then [`Ledger::validate`].
    pub(crate) fn from_stores(
        ids: TxIdSet,
        accounts: impl IntoIterator<Item = (ClientId, Account)>,
        deposits: DepositStore,
    ) -> Result<Ledger, StateError> {
        let book = Book::with_accounts(accounts, deposits)?;
        let ledger = Ledger { ids, book };
        ledger.validate()?;
        Ok(ledger)
    }

    /// Checks that the state is one the rules can reach: every account's
    /// held amount is not negative, its total in range, and equal to the sum
    /// of its disputed deposits; every deposit is positive, its id claimed
    /// and its client known. The first failure is named, in client, then tx
    /// order.
    pub fn validate(&self) -> Result<(), StateError> {
        validate(&self.book, Some(&self.ids))
    }

    /// [`Ledger::validate`] for a ledger in parts: the claimed ids and books
    /// of disjoint clients (a cluster's workers').
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn validate_parts(ids: &TxIdSet, books: &[Book]) -> Result<(), StateError> {
        books.iter().try_for_each(|book| validate(book, Some(ids)))
    }
}

/// [`Ledger::validate`]'s checks on one book, and with `ids` that every
/// deposit's id is claimed. The first failure is named, in client, then tx
/// order.
fn validate(book: &Book, ids: Option<&TxIdSet>) -> Result<(), StateError> {
    let accounts = sorted_accounts([book]);
    for (client, account) in &accounts {
        if account.held.is_negative() || checked_total(account).is_err() {
            return Err(StateError::BadAccount(*client));
        }
    }
    // Per client: the held amount its disputed deposits add up to.
    let mut disputed = vec![0i128; usize::from(ClientId::MAX) + 1];
    for (id, deposit) in book.deposits.iter() {
        if !deposit.amount.is_positive() {
            return Err(StateError::BadDeposit(id));
        }
        if !book.accounts.contains(deposit.client) {
            return Err(StateError::DepositWithoutAccount(id, deposit.client));
        }
        if ids.is_some_and(|ids| !ids.contains(id)) {
            return Err(StateError::DepositNotClaimed(id));
        }
        if deposit.disputed {
            disputed[usize::from(deposit.client)] += i128::from(deposit.amount.raw());
        }
    }
    for (client, account) in &accounts {
        if i128::from(account.held.raw()) != disputed[usize::from(*client)] {
            return Err(StateError::HeldMismatch(*client));
        }
    }
    Ok(())
}

/// `parts` new books holding the accounts and deposits of `from` (books of
/// disjoint clients), each client's in book `to(client)`.
fn redistribute(from: &[Book], parts: usize, to: impl Fn(ClientId) -> usize) -> Vec<Book> {
    let stores: Vec<&DepositStore> = from.iter().map(|book| &book.deposits).collect();
    let deposits = DepositStore::redistribute(&stores, parts, &to);
    let mut books: Vec<Book> = deposits
        .into_iter()
        .map(|deposits| Book {
            deposits,
            ..Book::default()
        })
        .collect();
    for book in from {
        for (client, account) in book.accounts() {
            books[to(client)].restore_account(client, *account);
        }
    }
    books
}

/// Why parts given to [`Ledger::from_parts`] are not a ledger's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// A client appears twice among the accounts.
    ClientTwice(ClientId),
    /// An account holds a negative amount or its total leaves the range.
    BadAccount(ClientId),
    /// A tx id appears twice among the claimed ids.
    IdTwice(TxId),
    /// A tx id appears twice among the deposits.
    DepositTwice(TxId),
    /// A deposit's amount is not positive.
    BadDeposit(TxId),
    /// A deposit names a client that has no account.
    DepositWithoutAccount(TxId, ClientId),
    /// A deposit's id is not among the claimed ids.
    DepositNotClaimed(TxId),
    /// A client's held amount differs from the sum of its disputed deposits.
    HeldMismatch(ClientId),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StateError::ClientTwice(client) => write!(f, "client {client} appears twice"),
            StateError::BadAccount(client) => write!(
                f,
                "client {client} holds a negative amount or a total out of range"
            ),
            StateError::IdTwice(id) => write!(f, "tx id {id} is claimed twice"),
            StateError::DepositTwice(id) => write!(f, "deposit {id} appears twice"),
            StateError::BadDeposit(id) => write!(f, "deposit {id} is not positive"),
            StateError::DepositWithoutAccount(id, client) => {
                write!(f, "deposit {id} names client {client}, who has no account")
            }
            StateError::DepositNotClaimed(id) => {
                write!(f, "deposit {id} is not among the claimed tx ids")
            }
            StateError::HeldMismatch(client) => write!(
                f,
                "client {client}'s held amount is not the sum of its disputed deposits"
            ),
        }
    }
}

impl std::error::Error for StateError {}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn tx(kind: Kind, client: ClientId, id: u32, amount: &str) -> Tx {
        let amount = if amount.is_empty() {
            Amount::ZERO
        } else {
            Amount::parse(amount.as_bytes()).unwrap()
        };
        Tx {
            kind,
            client,
            tx: id,
            amount,
        }
    }

    /// One transaction per row with its expected outcome, then the expected
    /// final accounts as `(client, available, held, locked)`.
    fn run(steps: &[(Tx, Result<(), Reject>)], accounts: &[(ClientId, &str, &str, bool)]) {
        let mut ledger = Ledger::new();
        for (n, (t, expected)) in steps.iter().enumerate() {
            assert_eq!(ledger.apply(*t), *expected, "step {n}: {t:?}");
        }
        let got: Vec<_> = ledger
            .sorted_accounts()
            .into_iter()
            .map(|(c, a)| (c, a.available.to_string(), a.held.to_string(), a.locked))
            .collect();
        let want: Vec<_> = accounts
            .iter()
            .map(|&(c, av, h, l)| (c, av.to_string(), h.to_string(), l))
            .collect();
        assert_eq!(got, want);
    }

    const OK: Result<(), Reject> = Ok(());
    use Reject::*;

    #[test]
    fn conservation_check_passes_on_real_activity_and_catches_tampering() {
        let mut ledger = Ledger::new();
        for t in [
            tx(Deposit, 1, 1, "10"),
            tx(Deposit, 2, 2, "5"),
            tx(Withdrawal, 1, 3, "4"),
            tx(Dispute, 2, 2, ""),
            tx(Chargeback, 2, 2, ""),
        ] {
            ledger.apply(t).unwrap();
        }
        ledger.check_invariants();
        assert_eq!(ledger.book.net, 6 * 10_000);
        // A corrupted balance is caught.
        ledger.book.accounts.get_or_default(1).available = Amount::from_raw(1);
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ledger.check_invariants()));
        assert!(caught.is_err());
    }

    #[test]
    fn deposit_and_withdrawal() {
        run(
            &[
                (tx(Deposit, 1, 1, "1.5"), OK),
                (tx(Withdrawal, 1, 2, "0.5"), OK),
                (tx(Withdrawal, 1, 3, "1.0001"), Err(InsufficientFunds)),
                (tx(Withdrawal, 1, 4, "1"), OK),
            ],
            &[(1, "0.0000", "0.0000", false)],
        );
    }

    #[test]
    fn every_record_creates_its_account_even_when_rejected() {
        run(
            &[
                (tx(Withdrawal, 7, 1, "1"), Err(InsufficientFunds)),
                (tx(Dispute, 8, 99, ""), Err(UnknownTx)),
                (tx(Resolve, 9, 99, ""), Err(UnknownTx)),
                (tx(Chargeback, 10, 99, ""), Err(UnknownTx)),
            ],
            &[
                (7, "0.0000", "0.0000", false),
                (8, "0.0000", "0.0000", false),
                (9, "0.0000", "0.0000", false),
                (10, "0.0000", "0.0000", false),
            ],
        );
    }

    #[test]
    fn tx_ids_are_global_and_claimed_even_by_rejected_records() {
        run(
            &[
                (tx(Deposit, 1, 1, "1"), OK),
                (tx(Deposit, 2, 1, "5"), Err(DuplicateTx)),
                (tx(Withdrawal, 1, 1, "1"), Err(DuplicateTx)),
                // A rejected withdrawal still claims its id.
                (tx(Withdrawal, 3, 2, "1"), Err(InsufficientFunds)),
                (tx(Deposit, 3, 2, "1"), Err(DuplicateTx)),
                // Disputes do not claim ids.
                (tx(Dispute, 4, 3, ""), Err(UnknownTx)),
                (tx(Deposit, 4, 3, "2"), OK),
            ],
            &[
                (1, "1.0000", "0.0000", false),
                (2, "0.0000", "0.0000", false),
                (3, "0.0000", "0.0000", false),
                (4, "2.0000", "0.0000", false),
            ],
        );
    }

    #[test]
    fn duplicate_is_checked_before_locked() {
        run(
            &[
                (tx(Deposit, 1, 1, "1"), OK),
                (tx(Dispute, 1, 1, ""), OK),
                (tx(Chargeback, 1, 1, ""), OK),
                (tx(Deposit, 1, 1, "1"), Err(DuplicateTx)),
                (tx(Deposit, 1, 2, "1"), Err(AccountLocked)),
                // The locked deposit still claimed id 2.
                (tx(Deposit, 2, 2, "1"), Err(DuplicateTx)),
            ],
            &[
                (1, "0.0000", "0.0000", true),
                (2, "0.0000", "0.0000", false),
            ],
        );
    }

    #[test]
    fn locked_account_rejects_everything() {
        run(
            &[
                (tx(Deposit, 1, 1, "10"), OK),
                (tx(Deposit, 1, 2, "5"), OK),
                (tx(Dispute, 1, 1, ""), OK),
                (tx(Dispute, 1, 2, ""), OK),
                (tx(Chargeback, 1, 1, ""), OK),
                (tx(Deposit, 1, 3, "1"), Err(AccountLocked)),
                (tx(Withdrawal, 1, 4, "1"), Err(AccountLocked)),
                (tx(Dispute, 1, 1, ""), Err(AccountLocked)),
                (tx(Resolve, 1, 2, ""), Err(AccountLocked)),
                (tx(Chargeback, 1, 2, ""), Err(AccountLocked)),
                (tx(Dispute, 1, 999, ""), Err(AccountLocked)),
            ],
            &[(1, "0.0000", "5.0000", true)],
        );
    }

    #[test]
    fn dispute_resolve_and_redispute() {
        run(
            &[
                (tx(Deposit, 1, 1, "10"), OK),
                (tx(Resolve, 1, 1, ""), Err(NotDisputed)),
                (tx(Chargeback, 1, 1, ""), Err(NotDisputed)),
                (tx(Dispute, 1, 1, ""), OK),
                (tx(Dispute, 1, 1, ""), Err(AlreadyDisputed)),
                (tx(Resolve, 1, 1, ""), OK),
                (tx(Resolve, 1, 1, ""), Err(NotDisputed)),
                (tx(Dispute, 1, 1, ""), OK),
            ],
            &[(1, "0.0000", "10.0000", false)],
        );
    }

    #[test]
    fn chargeback_removes_held_funds_and_locks() {
        run(
            &[
                (tx(Deposit, 1, 1, "10"), OK),
                (tx(Deposit, 1, 2, "3"), OK),
                (tx(Dispute, 1, 2, ""), OK),
                (tx(Chargeback, 1, 2, ""), OK),
            ],
            &[(1, "10.0000", "0.0000", true)],
        );
    }

    #[test]
    fn dispute_may_drive_available_negative() {
        run(
            &[
                (tx(Deposit, 1, 1, "10"), OK),
                (tx(Withdrawal, 1, 2, "8"), OK),
                (tx(Dispute, 1, 1, ""), OK),
                (tx(Withdrawal, 1, 3, "0.0001"), Err(InsufficientFunds)),
            ],
            &[(1, "-8.0000", "10.0000", false)],
        );
    }

    #[test]
    fn unknown_tx_covers_every_wrong_reference() {
        run(
            &[
                (tx(Deposit, 1, 1, "10"), OK),
                (tx(Withdrawal, 1, 2, "1"), OK),
                (tx(Withdrawal, 1, 3, "100"), Err(InsufficientFunds)),
                (tx(Deposit, 2, 4, "5"), OK),
                (tx(Deposit, 3, 5, "5"), OK),
                (tx(Dispute, 3, 5, ""), OK),
                (tx(Chargeback, 3, 5, ""), OK),
                (tx(Deposit, 3, 6, "5"), Err(AccountLocked)),
                // Unknown id.
                (tx(Dispute, 1, 42, ""), Err(UnknownTx)),
                // A withdrawal.
                (tx(Dispute, 1, 2, ""), Err(UnknownTx)),
                // A rejected withdrawal.
                (tx(Dispute, 1, 3, ""), Err(UnknownTx)),
                // Another client's deposit.
                (tx(Dispute, 1, 4, ""), Err(UnknownTx)),
                (tx(Resolve, 1, 4, ""), Err(UnknownTx)),
                (tx(Chargeback, 1, 4, ""), Err(UnknownTx)),
                // A deposit rejected because its account was locked.
                (tx(Dispute, 3, 6, ""), Err(AccountLocked)),
                (tx(Dispute, 1, 6, ""), Err(UnknownTx)),
            ],
            &[
                (1, "9.0000", "0.0000", false),
                (2, "5.0000", "0.0000", false),
                (3, "0.0000", "0.0000", true),
            ],
        );
    }

    #[test]
    fn precedence_unknown_before_already_and_not_disputed() {
        run(
            &[
                (tx(Deposit, 1, 1, "1"), OK),
                (tx(Dispute, 1, 1, ""), OK),
                (tx(Dispute, 2, 1, ""), Err(UnknownTx)),
                (tx(Resolve, 2, 1, ""), Err(UnknownTx)),
            ],
            &[
                (1, "0.0000", "1.0000", false),
                (2, "0.0000", "0.0000", false),
            ],
        );
    }

    #[test]
    fn overflow_is_a_rejection_that_changes_nothing() {
        let max = "922337203685477.5807";
        run(
            &[
                (tx(Deposit, 1, 1, max), OK),
                (tx(Deposit, 1, 2, "0.0001"), Err(Overflow)),
                // The overflowing deposit claimed its id but is not disputable.
                (tx(Dispute, 1, 2, ""), Err(UnknownTx)),
                (tx(Deposit, 1, 2, "0.0001"), Err(DuplicateTx)),
                (tx(Withdrawal, 1, 3, "0.0001"), OK),
                (tx(Deposit, 1, 4, "0.0001"), OK),
            ],
            &[(1, max, "0.0000", false)],
        );
    }

    #[test]
    fn overflow_of_total_through_a_dispute_and_deposit() {
        let max = "922337203685477.5807";
        run(
            &[
                (tx(Deposit, 1, 1, max), OK),
                (tx(Dispute, 1, 1, ""), OK),
                // available 0, held MAX: a deposit fits available but not total.
                (tx(Deposit, 1, 2, "1"), Err(Overflow)),
                (tx(Resolve, 1, 1, ""), OK),
            ],
            &[(1, max, "0.0000", false)],
        );
    }

    #[test]
    fn overflow_of_held_and_negative_available_through_disputes() {
        let max = "922337203685477.5807";
        run(
            &[
                (tx(Deposit, 1, 1, max), OK),
                (tx(Withdrawal, 1, 2, max), OK),
                (tx(Deposit, 1, 3, max), OK),
                (tx(Withdrawal, 1, 4, max), OK),
                (tx(Dispute, 1, 1, ""), OK),
                // held would be 2 * MAX.
                (tx(Dispute, 1, 3, ""), Err(Overflow)),
                (tx(Resolve, 1, 1, ""), OK),
            ],
            &[(1, "0.0000", "0.0000", false)],
        );
    }

    #[test]
    fn available_can_reach_the_bottom_of_the_range_exactly() {
        // available = -MAX after a dispute; one more 0.0001 dispute reaches
        // MIN exactly, which is in range, but total = MIN + held must fit too.
        let max = "922337203685477.5807";
        run(
            &[
                (tx(Deposit, 1, 1, max), OK),
                (tx(Withdrawal, 1, 2, max), OK),
                (tx(Dispute, 1, 1, ""), OK),
            ],
            &[(1, "-922337203685477.5807", max, false)],
        );
    }

    #[test]
    fn shard_spreads_clients_over_all_workers() {
        for workers in [1, 2, 3, 4, 8, 15, 16] {
            let mut counts = vec![0u32; workers];
            for client in 0..=u16::MAX {
                counts[shard(client, workers)] += 1;
            }
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(
                *max - *min <= 65_536 / workers as u32 / 10 + 1,
                "{workers}: {counts:?}"
            );
            // Multiples of the worker count also spread.
            let mut multiples = vec![0u32; workers];
            for client in (0..=u16::MAX).step_by(workers.max(2)) {
                multiples[shard(client, workers)] += 1;
            }
            assert!(
                multiples.iter().all(|&n| n > 0) || workers == 1,
                "{workers}: {multiples:?}"
            );
        }
    }

    /// A deterministic stream over few clients and ids, with every kind:
    /// ids mostly sequential, some scattered over u32; disputes, resolves
    /// and chargebacks mostly naming a recent deposit with its own client.
    fn stream(n: u32, seed: u64) -> Vec<Tx> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut txs: Vec<Tx> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let r = next();
            let kind = [
                Deposit, Deposit, Deposit, Withdrawal, Dispute, Resolve, Chargeback,
            ][(r % 7) as usize];
            let mut client = (r >> 8) as u16 % 40;
            let id = if kind.claims_id() {
                if (r >> 20) % 4 == 0 {
                    (r >> 32) as u32
                } else {
                    i
                }
            } else {
                let back = 1 + (r >> 40) as usize % 30;
                match txs.len().checked_sub(back).map(|at| txs[at]) {
                    Some(earlier) if (r >> 20) % 8 != 0 => {
                        client = earlier.client;
                        earlier.tx
                    }
                    _ => (r >> 32) as u32,
                }
            };
            let amount = Amount::from_raw(1 + (r >> 44) as i64 % 500_000);
            txs.push(Tx {
                kind,
                client,
                tx: id,
                amount: if kind.claims_id() {
                    amount
                } else {
                    Amount::ZERO
                },
            });
        }
        txs
    }

    use crate::store::Deposit as Stored;

    type Parts = (Vec<(ClientId, Account)>, Vec<(TxId, Stored)>, Vec<TxId>);

    fn parts(ledger: &Ledger) -> Parts {
        (
            ledger.accounts().collect(),
            ledger.deposits().collect(),
            ledger.claimed_ids().collect(),
        )
    }

    #[test]
    fn the_state_splits_merges_and_rebuilds_alike_for_every_worker_count() {
        let txs = stream(30_000, 9);
        let (first, then) = txs.split_at(20_000);
        let mut ledger = Ledger::new();
        for t in first {
            let _ = ledger.apply(*t);
        }
        let before = parts(&ledger);
        assert!(
            before.1.iter().any(|(_, d)| d.disputed),
            "some deposit disputed"
        );
        assert!(
            before.0.iter().any(|(_, a)| a.locked),
            "some account locked"
        );
        assert!(before.2.windows(2).all(|w| w[0] < w[1]), "ids ascending");
        assert!(
            before.1.windows(2).all(|w| w[0].0 < w[1].0),
            "deposits ascending"
        );
        // Rebuilt from its own iterations.
        let rebuilt = Ledger::from_parts(before.0.clone(), before.1.clone(), before.2.clone());
        let rebuilt = rebuilt.unwrap();
        assert!(parts(&rebuilt) == before);
        // Split for any worker count: each book holds its shard's clients;
        // merged back, nothing changed.
        for workers in 1..=8 {
            let (ids, books) =
                Ledger::from_parts(before.0.clone(), before.1.clone(), before.2.clone())
                    .unwrap()
                    .split(workers);
            assert_eq!(books.len(), workers);
            for (index, book) in books.iter().enumerate() {
                book.check_invariants();
                assert!(book.accounts().all(|(c, _)| shard(c, workers) == index));
                assert!(book
                    .deposits()
                    .iter()
                    .all(|(_, d)| shard(d.client, workers) == index));
            }
            let merged = Ledger::merge(ids, books);
            merged.check_invariants();
            assert!(parts(&merged) == before, "{workers} workers");
        }
        // The rebuilt ledger goes on exactly like the original.
        let mut rebuilt = rebuilt;
        for t in then {
            assert_eq!(rebuilt.apply(*t), ledger.apply(*t), "{t:?}");
        }
        assert!(parts(&rebuilt) == parts(&ledger));
    }

    #[test]
    fn parts_that_no_run_could_reach_are_refused() {
        let account = |available: i64, held: i64| Account {
            available: Amount::from_raw(available),
            held: Amount::from_raw(held),
            locked: false,
        };
        let deposit = |client, amount, disputed| Stored {
            client,
            amount: Amount::from_raw(amount),
            disputed,
        };
        let good_accounts = vec![(1, account(5, 3)), (2, account(0, 0))];
        let good_deposits = vec![(10, deposit(1, 5, false)), (11, deposit(1, 3, true))];
        let good_ids = vec![10, 11, 12];
        let check =
            |accounts: Vec<(ClientId, Account)>, deposits: Vec<(TxId, Stored)>, ids: Vec<TxId>| {
                Ledger::from_parts(accounts, deposits, ids).map(|_| ())
            };
        assert_eq!(
            check(
                good_accounts.clone(),
                good_deposits.clone(),
                good_ids.clone()
            ),
            Ok(())
        );
        let table: Vec<(Parts, StateError)> = vec![
            (
                (
                    vec![(1, account(5, 3)), (1, account(0, 0))],
                    good_deposits.clone(),
                    good_ids.clone(),
                ),
                StateError::ClientTwice(1),
            ),
            (
                (vec![(1, account(5, -3))], vec![], vec![]),
                StateError::BadAccount(1),
            ),
            (
                (vec![(1, account(i64::MAX, 1))], vec![], vec![]),
                StateError::BadAccount(1),
            ),
            (
                (good_accounts.clone(), vec![], vec![4, 4]),
                StateError::IdTwice(4),
            ),
            (
                (
                    good_accounts.clone(),
                    vec![(10, deposit(1, 0, false))],
                    good_ids.clone(),
                ),
                StateError::BadDeposit(10),
            ),
            (
                (
                    good_accounts.clone(),
                    vec![(10, deposit(9, 5, false))],
                    good_ids.clone(),
                ),
                StateError::DepositWithoutAccount(10, 9),
            ),
            (
                (
                    good_accounts.clone(),
                    vec![(13, deposit(1, 5, false))],
                    good_ids.clone(),
                ),
                StateError::DepositNotClaimed(13),
            ),
            (
                (
                    good_accounts.clone(),
                    vec![(11, deposit(1, 3, true)), (11, deposit(1, 3, true))],
                    good_ids.clone(),
                ),
                StateError::DepositTwice(11),
            ),
            (
                (
                    good_accounts.clone(),
                    vec![(11, deposit(1, 2, true))],
                    good_ids.clone(),
                ),
                StateError::HeldMismatch(1),
            ),
        ];
        for ((accounts, deposits, ids), expected) in table {
            assert_eq!(check(accounts, deposits, ids), Err(expected));
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn a_rejection_writes_nothing_to_the_deposit_store() {
        let max = "922337203685477.5807";
        let mut ledger = Ledger::new();
        ledger.apply(tx(Deposit, 1, 1, max)).unwrap();
        let before = parts(&ledger);
        // Overflow on the deposit: claimed, but neither stored nor counted.
        assert_eq!(ledger.apply(tx(Deposit, 1, 2, "1")), Err(Overflow));
        assert_eq!(ledger.deposits().count(), 1);
        assert_eq!(parts(&ledger).0, before.0);
        assert_eq!(parts(&ledger).2, vec![1, 2]);
        ledger.check_invariants();
    }

    #[test]
    #[should_panic(expected = "a deposit amount must be positive")]
    fn a_deposit_without_a_positive_amount_is_a_caller_bug() {
        let _ = Ledger::new().apply(Tx {
            kind: Deposit,
            client: 1,
            tx: 1,
            amount: Amount::ZERO,
        });
    }

    #[test]
    #[should_panic(expected = "a withdrawal amount must be positive")]
    fn a_negative_withdrawal_is_a_caller_bug() {
        let _ = Book::default().apply(
            &Tx {
                kind: Withdrawal,
                client: 1,
                tx: 1,
                amount: Amount::from_raw(-5),
            },
            true,
        );
    }

    /// A batch for [`Ledger::claim_run`]: its rows' kinds, clients and
    /// amounts, deposits' and withdrawals' ids counting up from `first`
    /// (the row at `broken`, if any, takes `other` instead), the others
    /// naming a recent id.
    fn batch(first: u32, rows: &[(u8, u16, u16)], broken: Option<(usize, u32)>) -> Vec<Tx> {
        let mut next = first;
        rows.iter()
            .enumerate()
            .map(|(i, &(kind, client, amount))| {
                let kind = [Deposit, Deposit, Withdrawal, Dispute, Resolve, Chargeback]
                    [usize::from(kind) % 6];
                let id = if kind.claims_id() {
                    next = next.wrapping_add(1);
                    match broken {
                        Some((at, other)) if at == i => other,
                        _ => next.wrapping_sub(1),
                    }
                } else {
                    first.wrapping_add(u32::from(amount) % 8)
                };
                Tx {
                    kind,
                    client: client % 3,
                    tx: id,
                    amount: Amount::from_raw(i64::from(amount) + 1),
                }
            })
            .collect()
    }

    proptest::proptest! {
        /// Batches applied through `claim_run` (a run claimed at once,
        /// some of its ids claimed before) give every record the outcome
        /// and the ledger the state that `apply_ref` row by row gives.
        #[test]
        fn a_run_claimed_at_once_is_applied_as_its_rows_one_by_one(
            batches in proptest::collection::vec(
                (
                    proptest::prop_oneof![0u32..40, (u32::MAX - 40)..=u32::MAX],
                    proptest::collection::vec((0u8..6, 0u16..3, 0u16..500), 0..40),
                    proptest::option::of((0usize..40, 0u32..60)),
                ),
                1..8,
            )
        ) {
            let (mut one_by_one, mut at_once) = (Ledger::new(), Ledger::new());
            let mut repeated = Vec::new();
            for (first, rows, broken) in &batches {
                let txs = batch(*first, rows, *broken);
                let claimed = at_once.claim_run(&txs, &mut repeated);
                for tx in &txs {
                    let expected = one_by_one.apply_ref(tx);
                    let got = if claimed {
                        at_once.apply_claimed(tx, &repeated)
                    } else {
                        at_once.apply_ref(tx)
                    };
                    proptest::prop_assert_eq!(got, expected, "{:?}", tx);
                }
            }
            proptest::prop_assert_eq!(at_once.sorted_accounts(), one_by_one.sorted_accounts());
            let ids = |l: &Ledger| l.claimed_ids().collect::<Vec<_>>();
            proptest::prop_assert_eq!(ids(&at_once), ids(&one_by_one));
        }
    }

    #[test]
    fn a_run_with_ids_claimed_before_or_past_the_largest_id() {
        let mut ledger = Ledger::new();
        let mut repeated = Vec::new();
        let deposit = |id| tx(Deposit, 1, id, "1");
        assert!(ledger.claim_run(&[deposit(5), deposit(6), deposit(7)], &mut repeated));
        assert!(repeated.is_empty());
        let txs = [deposit(6), tx(Dispute, 1, 5, ""), deposit(7), deposit(8)];
        assert!(ledger.claim_run(&txs, &mut repeated));
        assert_eq!(repeated, vec![6, 7]);
        assert_eq!(
            ledger.apply_claimed(&txs[0], &repeated),
            Err(Reject::DuplicateTx)
        );
        assert_eq!(ledger.apply_claimed(&txs[3], &repeated), Ok(()));
        // Not consecutive, or wrapping past u32::MAX: nothing claimed.
        assert!(!ledger.claim_run(&[deposit(20), deposit(22)], &mut repeated));
        assert!(!ledger.claim_run(&[deposit(u32::MAX), deposit(0)], &mut repeated));
        assert_eq!(ledger.claimed_ids().collect::<Vec<_>>(), vec![5, 6, 7, 8]);
        // No claim at all is a run of nothing.
        assert!(ledger.claim_run(&[tx(Dispute, 1, 5, "")], &mut repeated));
        assert!(repeated.is_empty());
    }
}
