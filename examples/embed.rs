//! The engine embedded in another program: yesterday's CSV through
//! `run_csv`, today's transactions from some other source through the push
//! API, today's run starting from yesterday's state.
//!
//!     cargo run --example embed

use payments_engine::{Amount, Engine, EngineBuilder, Kind, Ledger, Record, Tx};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Yesterday: a CSV file, 2 worker threads.
    let yesterday = "type,client,tx,amount\n\
                     deposit,1,1,100.0\n\
                     deposit,2,2,50.0\n\
                     withdrawal,1,3,30.0\n";
    let finished = EngineBuilder::new()
        .workers(2)
        .run_csv(Ledger::new(), yesterday.as_bytes())?;
    println!("yesterday: {:?}", finished.tally());
    let state = finished.into_state();

    // Today: records from a queue, say; one worker, yesterday's state.
    let mut engine = Engine::builder().workers(1).build(state)?;
    let dispute = |client, tx| Tx {
        kind: Kind::Dispute,
        client,
        tx,
        amount: Amount::ZERO,
    };
    engine.submit(Record::at_line(dispute(2, 2), 1))?; // yesterday's deposit
    engine.submit(Tx {
        kind: Kind::Withdrawal,
        client: 2,
        tx: 4,
        amount: Amount::parse(b"10")?, // rejected: the 50.0 is held
    })?;
    let finished = engine.finish()?;
    println!("today: {:?}", finished.tally());
    finished.write_accounts(std::io::stdout())?;
    Ok(())
}
