fn main() -> anyhow::Result<()> {
    shardgate::cli::main()
}
