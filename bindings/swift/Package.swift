// swift-tools-version:6.0
// The Swift binding: a system-library target over libdala's C API (found through the pkg-config file
// CMake writes to build/lib/pkgconfig/dala.pc from the template it also installs) and the Dala module on top. Swift 6 language mode.
import PackageDescription

let package = Package(
    name: "Dala",
    products: [.library(name: "Dala", targets: ["Dala"])],
    targets: [
        .systemLibrary(name: "CDala", path: "Sources/CDala", pkgConfig: "dala"),
        .target(name: "Dala", dependencies: ["CDala"]),
        .executableTarget(name: "DalaBench", dependencies: ["Dala", "CDala"]),
        .testTarget(name: "DalaTests", dependencies: ["Dala"]),
    ],
    swiftLanguageModes: [.v6]
)
