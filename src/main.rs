fn main() {
    std::process::exit(netdump_provision::cli::main());
}
