//! `pickleshelf pickle ...`: the codec on files, without a store.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use pickleshelf::pickle;

use super::{Input, write_stdout};

/// Protocols the encoder writes.
fn protocol_parser() -> clap::builder::RangedI64ValueParser<u8> {
    clap::value_parser!(u8).range(2..=5)
}

#[derive(Subcommand)]
pub enum PickleCommand {
    /// Print a pickle as tagged JSON.
    ///
    /// Reads any pickle protocol (0-5) and prints the value as one line of tagged JSON
    /// (the form of the conformance corpus; see docs/PICKLE.md). Nothing in the pickle
    /// is imported or executed: class instances are printed as "object" nodes.
    #[command(after_help = "Example:\n  pickleshelf pickle decode examples/data/sample.pkl")]
    Decode {
        /// The pickle file, or - for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write tagged JSON as pickle bytes to stdout.
    ///
    /// Reads tagged JSON (plain values; "id"/"ref" make shared and cyclic containers)
    /// and writes the pickle bytes to stdout. Object nodes cannot be encoded from JSON.
    #[command(after_help = "Example:\n  \
        echo '{\"list\":[{\"int\":\"1\"},{\"str\":\"a\"}]}' | pickleshelf pickle encode - > out.pkl")]
    Encode {
        /// The pickle protocol to write (2-5).
        #[arg(long, short, value_name = "N", default_value_t = pickle::DEFAULT_PROTOCOL, value_parser = protocol_parser())]
        protocol: u8,
        /// The tagged JSON file, or - for stdin.
        #[arg(value_name = "JSON_FILE")]
        file: PathBuf,
    },
    /// Decode a pickle and encode it again to stdout.
    ///
    /// Objects are written back as they were read (their class, arguments and state),
    /// so this also converts between protocols.
    #[command(
        after_help = "Example:\n  pickleshelf pickle roundtrip --protocol 2 examples/data/sample.pkl > sample.p2.pkl"
    )]
    Roundtrip {
        /// The pickle protocol to write (2-5).
        #[arg(long, short, value_name = "N", default_value_t = pickle::DEFAULT_PROTOCOL, value_parser = protocol_parser())]
        protocol: u8,
        /// The pickle file, or - for stdin.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs one `pickle` subcommand.
pub fn run(cmd: PickleCommand) -> anyhow::Result<()> {
    match cmd {
        PickleCommand::Decode { file } => {
            let input = Input::from(file);
            let value = decode(&input)?;
            let mut json = pickle::to_tagged_json(&value);
            json.push('\n');
            write_stdout(json.as_bytes())
        }
        PickleCommand::Encode { protocol, file } => {
            let input = Input::from(file);
            let bytes = input.read()?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| pickle::Error::Json { offset: e.valid_up_to(), message: "the text is not UTF-8".into() });
            let value = text.and_then(pickle::from_tagged_json).with_context(|| input.name())?;
            let out = pickle::encode(&value, protocol).with_context(|| input.name())?;
            write_stdout(&out)
        }
        PickleCommand::Roundtrip { protocol, file } => {
            let input = Input::from(file);
            let value = decode(&input)?;
            let out = pickle::encode(&value, protocol).with_context(|| input.name())?;
            write_stdout(&out)
        }
    }
}

fn decode(input: &Input) -> anyhow::Result<pickle::Value> {
    let bytes = input.read()?;
    pickle::decode(&bytes).with_context(|| input.name())
}
