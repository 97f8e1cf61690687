//! `pickleshelf-server STORE [--bind ADDR] [--unix PATH] [--requirepass-file F] ...`: the
//! `pickleshelf serve` command as a program of its own, for a server without the rest of
//! the command-line tool (and for this crate's tests, which start it as a process).
use clap::Parser;

#[derive(Parser)]
#[command(name = "pickleshelf-server", version, about = "Serve a pickleshelf store over the Redis protocol")]
struct Cli {
    #[command(flatten)]
    serve: pickleshelf_server::cli::ServeArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = pickleshelf_server::cli::run(cli.serve) {
        eprintln!("pickleshelf serve: {e:#}");
        std::process::exit(2);
    }
}
