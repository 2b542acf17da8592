//! The ledger: SPEC's rules as a single-threaded state machine. No I/O, no
//! threads, no allocation per transaction beyond the growth of its tables.
//!
//! `apply` follows TigerBeetle's `create_transfer`: every precondition is
//! checked in SPEC's order and returns its own [`Reject`]; the new balances are
//! computed with checked arithmetic; only after the last check passes does any
//! state change. A rejected transaction leaves no trace but the account that
//! SPEC rule 1 creates and the tx id that rule 2 claims.
//!
//! The state is split in two so that the sharded pipeline can reuse it:
//! [`TxIdSet`] holds the one rule that needs global file order (rule 2, tx ids
//! are global across clients), and [`Book`] holds everything that is per
//! client (accounts and their deposits). [`Ledger`] is the two together.

use crate::amount::Amount;
use crate::store::{DepositStore, TxIdSet};
use crate::tx::{ClientId, Kind, Tx};

/// Why a well-formed transaction was not applied. One variant per SPEC
/// reason; the declaration order is the order of the rejects-file reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// One client's balances. `total` is derived: always `available + held`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// Accounts and their applied deposits: every rule except the global tx-id
/// claim. A worker of the sharded pipeline owns one `Book` for its clients.
#[derive(Default)]
pub struct Book {
    accounts: hashbrown::HashMap<ClientId, Account>,
    deposits: DepositStore,
    /// Applied deposits - applied withdrawals - charged back amounts, modulo
    /// 2^64: what the accounts' totals must add up to.
    net: i64,
}

impl Book {
    /// A book for one of `workers` workers (see [`DepositStore::for_share`]).
    pub fn for_worker_count(workers: usize) -> Book {
        Book {
            deposits: DepositStore::for_share(workers),
            ..Book::default()
        }
    }

    /// Applies a well-formed transaction. `id_is_fresh` is the outcome of
    /// rule 2's claim for deposits and withdrawals (ignored for the others).
    pub fn apply(&mut self, tx: Tx, id_is_fresh: bool) -> Result<(), Reject> {
        // Rule 1: every well-formed record creates its client's account.
        let account = self.accounts.entry(tx.client).or_default();
        // Rule 2.
        if tx.kind.moves_money() && !id_is_fresh {
            return Err(Reject::DuplicateTx);
        }
        // Rule 3.
        if account.locked {
            return Err(Reject::AccountLocked);
        }
        let mut next = *account;
        // How this record changes the account's total, by SPEC's rules.
        let total_change = match tx.kind {
            // Rule 4.
            Kind::Deposit => {
                next.available = account
                    .available
                    .checked_add(tx.amount)
                    .ok_or(Reject::Overflow)?;
                checked_total(&next)?;
                self.deposits.insert(tx.tx, tx.client, tx.amount);
                tx.amount.raw()
            }
            // Rule 5.
            Kind::Withdrawal => {
                if account.available < tx.amount {
                    return Err(Reject::InsufficientFunds);
                }
                next.available = account
                    .available
                    .checked_sub(tx.amount)
                    .ok_or(Reject::Overflow)?;
                -tx.amount.raw()
            }
            // Rule 6.
            Kind::Dispute => {
                let deposit = self.deposits.get(tx.tx).filter(|d| d.client == tx.client);
                let deposit = deposit.ok_or(Reject::UnknownTx)?;
                if deposit.disputed {
                    return Err(Reject::AlreadyDisputed);
                }
                next.available = account
                    .available
                    .checked_sub(deposit.amount)
                    .ok_or(Reject::Overflow)?;
                next.held = account
                    .held
                    .checked_add(deposit.amount)
                    .ok_or(Reject::Overflow)?;
                checked_total(&next)?;
                self.deposits.set_disputed(tx.tx, true);
                0
            }
            // Rules 7 and 8.
            Kind::Resolve | Kind::Chargeback => {
                let deposit = self.deposits.get(tx.tx).filter(|d| d.client == tx.client);
                let deposit = deposit.ok_or(Reject::UnknownTx)?;
                if !deposit.disputed {
                    return Err(Reject::NotDisputed);
                }
                next.held = account
                    .held
                    .checked_sub(deposit.amount)
                    .ok_or(Reject::Overflow)?;
                if tx.kind == Kind::Resolve {
                    next.available = account
                        .available
                        .checked_add(deposit.amount)
                        .ok_or(Reject::Overflow)?;
                } else {
                    next.locked = true;
                }
                checked_total(&next)?;
                self.deposits.set_disputed(tx.tx, false);
                if tx.kind == Kind::Chargeback {
                    -deposit.amount.raw()
                } else {
                    0
                }
            }
        };
        // Invariants, on in release builds (cost measured in perf.md): held
        // never negative, and the total moved by exactly what the rule says
        // (compared modulo 2^64: cheap, and exact for any real bug).
        let moved = (next.available.raw().wrapping_sub(account.available.raw()))
            .wrapping_add(next.held.raw().wrapping_sub(account.held.raw()));
        if moved != total_change || next.held.is_negative() {
            invariant_broken(&tx, account, &next);
        }
        self.net = self.net.wrapping_add(total_change);
        *account = next;
        Ok(())
    }

    /// Checks, at the end of a run, that money is conserved: the totals of
    /// all accounts add up to applied deposits - withdrawals - chargebacks,
    /// every total is available + held, and no held is negative. Panics
    /// (a bug, not bad input) otherwise.
    pub fn check_invariants(&self) {
        let mut sum: i64 = 0;
        for (client, account) in &self.accounts {
            assert!(
                !account.held.is_negative(),
                "ledger invariant: client {client} holds a negative amount"
            );
            sum = sum.wrapping_add(account.total().raw());
        }
        assert_eq!(sum, self.net, "ledger invariant: money is not conserved");
    }

    /// All accounts, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = (ClientId, &Account)> + '_ {
        self.accounts
            .iter()
            .map(|(&client, account)| (client, account))
    }

    /// The applied-deposit store (for memory figures).
    pub fn deposits(&self) -> &DepositStore {
        &self.deposits
    }
}

/// A ledger invariant failed: a bug, never bad input.
#[cold]
#[inline(never)]
fn invariant_broken(tx: &Tx, before: &Account, after: &Account) -> ! {
    panic!("ledger invariant broken by {tx:?}: {before:?} -> {after:?}");
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

/// The whole single-threaded ledger: rule 2's global tx ids plus a [`Book`].
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

    /// Applies one well-formed transaction, checking SPEC's rules in order.
    pub fn apply(&mut self, tx: Tx) -> Result<(), Reject> {
        let id_is_fresh = tx.kind.moves_money() && self.ids.claim(tx.tx);
        self.book.apply(tx, id_is_fresh)
    }

    /// The per-client state.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Checks the end-of-run invariants ([`Book::check_invariants`]).
    pub fn check_invariants(&self) {
        self.book.check_invariants();
    }

    /// All accounts sorted by client id: the output order.
    pub fn sorted_accounts(&self) -> Vec<(ClientId, Account)> {
        sorted_accounts([&self.book])
    }

    /// Bytes held by the tx-id set (for memory figures).
    pub fn id_set_bytes(&self) -> usize {
        self.ids.heap_bytes()
    }
}

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
        ledger.book.accounts.get_mut(&1).unwrap().available = Amount::from_raw(1);
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
}
