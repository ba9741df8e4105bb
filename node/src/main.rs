use clap::Parser;

use pbx::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pbx::telemetry::init_tracing(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli.command.execute())
}
