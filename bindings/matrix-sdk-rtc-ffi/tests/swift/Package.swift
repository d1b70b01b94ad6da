// swift-tools-version:5.9
// The Swift bindings as a SwiftPM package, with an XCTest suite against a real Synapse.
//
// scripts/bindings/test-swift.sh assembles it: it copies this folder into the Swift chroot and
// fills in what generate.sh produced: Sources/matrix_sdk_rtc_ffiFFI (the C header and its
// module map, renamed module.modulemap), Sources/MatrixSdkRtc (the generated Swift) and
// lib/libmatrix_sdk_rtc_ffi.so.
import PackageDescription

let lib = Context.packageDirectory + "/lib"

let package = Package(
    name: "MatrixSdkRtc",
    products: [.library(name: "MatrixSdkRtc", targets: ["MatrixSdkRtc"])],
    targets: [
        .systemLibrary(name: "matrix_sdk_rtc_ffiFFI", path: "Sources/matrix_sdk_rtc_ffiFFI"),
        .target(
            name: "MatrixSdkRtc",
            dependencies: ["matrix_sdk_rtc_ffiFFI"],
            path: "Sources/MatrixSdkRtc",
            linkerSettings: [
                .linkedLibrary("matrix_sdk_rtc_ffi"),
                .unsafeFlags(["-L", lib, "-Xlinker", "-rpath", "-Xlinker", lib]),
            ]
        ),
        .testTarget(
            name: "MatrixSdkRtcTests",
            dependencies: ["MatrixSdkRtc"],
            path: "Tests/MatrixSdkRtcTests"
        ),
    ]
)
