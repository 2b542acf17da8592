//! A naive reference model of SPEC's rules: BTreeMap, i128, no cleverness,
//! no shared code with the engine. Used by `tests/model.rs` and by the fuzz
//! targets (included with `#[path]`), so there is one model.

use std::collections::{BTreeMap, BTreeSet};

use payments_engine::{Amount, Kind};

const LO: i128 = i64::MIN as i128;
const HI: i128 = i64::MAX as i128;

fn fits(values: &[i128]) -> bool {
    values.iter().all(|v| (LO..=HI).contains(v))
}

#[derive(Default)]
pub struct Model {
    /// client -> (available, held, locked)
    accounts: BTreeMap<u16, (i128, i128, bool)>,
    /// tx -> (client, amount, disputed), applied deposits only
    deposits: BTreeMap<u32, (u16, i128, bool)>,
    claimed: BTreeSet<u32>,
}

impl Model {
    pub fn apply(
        &mut self,
        kind: Kind,
        client: u16,
        tx: u32,
        amount: i128,
    ) -> Result<(), &'static str> {
        let (avail, held, locked) = *self.accounts.entry(client).or_default();
        if matches!(kind, Kind::Deposit | Kind::Withdrawal) && !self.claimed.insert(tx) {
            return Err("duplicate_tx");
        }
        if locked {
            return Err("account_locked");
        }
        let deposit = self.deposits.get(&tx).copied().filter(|d| d.0 == client);
        let (avail, held, locked) = match kind {
            Kind::Deposit => {
                if !fits(&[avail + amount, avail + amount + held]) {
                    return Err("overflow");
                }
                self.deposits.insert(tx, (client, amount, false));
                (avail + amount, held, false)
            }
            Kind::Withdrawal if avail < amount => return Err("insufficient_funds"),
            Kind::Withdrawal => (avail - amount, held, false),
            _ => {
                let (_, amount, disputed) = deposit.ok_or("unknown_tx")?;
                let next = match kind {
                    Kind::Dispute if disputed => return Err("already_disputed"),
                    Kind::Dispute => (avail - amount, held + amount, false),
                    _ if !disputed => return Err("not_disputed"),
                    Kind::Resolve => (avail + amount, held - amount, false),
                    _ => (avail, held - amount, true),
                };
                if !fits(&[next.0, next.1, next.0 + next.1]) {
                    return Err("overflow");
                }
                self.deposits.get_mut(&tx).unwrap().2 = kind == Kind::Dispute;
                next
            }
        };
        self.accounts.insert(client, (avail, held, locked));
        Ok(())
    }

    pub fn render(&self) -> String {
        let mut out = String::from("client,available,held,total,locked\n");
        for (client, &(a, h, l)) in &self.accounts {
            let money = |v: i128| Amount::from_raw(v as i64).to_string();
            out.push_str(&format!(
                "{client},{},{},{},{l}\n",
                money(a),
                money(h),
                money(a + h)
            ));
        }
        out
    }
}
