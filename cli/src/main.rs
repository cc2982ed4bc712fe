fn main() {
    std::process::exit(i32::from(flint::cli::main_with(std::env::args_os())));
}
