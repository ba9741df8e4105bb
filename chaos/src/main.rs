use clap::{Parser, Subcommand};

use pbx_chaos::scenarios;

/// Fault scenarios against a lab cluster of real `pbx` processes on loopback.
#[derive(Parser)]
#[command(name = "chaos")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Kill -9 the Raft leader repeatedly while clients write; measure time to accept writes again.
    LeaderKill {
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = match Cli::parse().scenario {
        Scenario::LeaderKill { rounds, nodes } => scenarios::leader_kill(rounds, nodes).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "{}: {} rounds, failover p50={} ms p99={} ms max={} ms, acknowledged={} lost={}",
        report.scenario,
        report.rounds,
        report.percentile(0.5),
        report.percentile(0.99),
        report.failover_ms.iter().max().copied().unwrap_or(0),
        report.acknowledged_writes,
        report.lost_writes
    );
    anyhow::ensure!(
        report.lost_writes == 0,
        "invariant broken: {} acknowledged writes lost",
        report.lost_writes
    );
    Ok(())
}
