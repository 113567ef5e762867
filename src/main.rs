fn main() {
    println!("coinfer");
}
