//! The small `Copy` types that flow from the parser to the ledger.

use crate::amount::Amount;

/// A client id: `0..=65535`.
pub type ClientId = u16;
/// A transaction id: `0..=4294967295`, global across clients.
pub type TxId = u32;

/// The five transaction types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Kind {
    Deposit,
    Withdrawal,
    Dispute,
    Resolve,
    Chargeback,
}

impl Kind {
    /// All kinds, in SPEC order.
    pub const ALL: [Kind; 5] = [
        Kind::Deposit,
        Kind::Withdrawal,
        Kind::Dispute,
        Kind::Resolve,
        Kind::Chargeback,
    ];

    /// The lowercase name used in the input and in diagnostics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
            Kind::Dispute => "dispute",
            Kind::Resolve => "resolve",
            Kind::Chargeback => "chargeback",
        }
    }

    /// Parses a type field, ASCII case-insensitively. Dispatches on length
    /// and first letter so that one comparison decides.
    #[inline]
    pub fn parse(field: &[u8]) -> Option<Kind> {
        let kind = match (field.len(), field.first()?.to_ascii_lowercase()) {
            (7, b'd') if field[2].eq_ignore_ascii_case(&b'p') => Kind::Deposit,
            (7, b'd') => Kind::Dispute,
            (7, b'r') => Kind::Resolve,
            (10, b'w') => Kind::Withdrawal,
            (10, b'c') => Kind::Chargeback,
            _ => return None,
        };
        field
            .eq_ignore_ascii_case(kind.name().as_bytes())
            .then_some(kind)
    }

    /// True for deposits and withdrawals: the records that claim their tx id
    /// (SPEC rule 2) and carry an amount of their own. Disputes, resolves
    /// and chargebacks refer to a deposit's id and amount instead (a
    /// chargeback moves money too, but never claims an id).
    #[inline]
    pub const fn claims_id(self) -> bool {
        matches!(self, Kind::Deposit | Kind::Withdrawal)
    }
}

/// One well-formed transaction. `amount` is zero for disputes, resolves and
/// chargebacks, whose amount field is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tx {
    pub kind: Kind,
    pub client: ClientId,
    pub tx: TxId,
    pub amount: Amount,
}

impl Tx {
    /// A dispute of tx 0 by client 0: what fills a record slot before a
    /// record is written to it (the fast parser's batch).
    pub(crate) const NONE: Tx = Tx {
        kind: Kind::Dispute,
        client: 0,
        tx: 0,
        amount: Amount::ZERO,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_parsing_is_ascii_case_insensitive_and_exact() {
        let table: &[(&str, Option<Kind>)] = &[
            ("deposit", Some(Kind::Deposit)),
            ("DEPOSIT", Some(Kind::Deposit)),
            ("Withdrawal", Some(Kind::Withdrawal)),
            ("dIsPuTe", Some(Kind::Dispute)),
            ("resolve", Some(Kind::Resolve)),
            ("CHARGEBACK", Some(Kind::Chargeback)),
            ("", None),
            ("deposits", None),
            ("depo", None),
            ("withdraw", None),
            ("charge back", None),
            ("type", None),
            ("DEPOſIT", None), // U+017F folds to 's' only under Unicode rules
        ];
        for &(input, expected) in table {
            assert_eq!(Kind::parse(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn tx_is_small() {
        assert_eq!(std::mem::size_of::<Tx>(), 16);
    }
}
