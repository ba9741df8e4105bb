use clap::Parser;

use pbx::cli::Cli;

// The SIP path allocates per message (parse, headers, responses) on several threads; glibc's malloc
// was a third of the leader's CPU under REGISTER load and kept its arenas' peak as RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pbx::telemetry::init_tracing(cli.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli.command.execute())
}
