#pragma once
// Exit codes are part of the contract (README "Command line"): scripts and systemd's
// RestartPreventExitStatus depend on them.
namespace walbust {
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // runtime failure, failed checks or tests
inline constexpr int kExitUsage = 2;    // usage or invalid configuration
inline constexpr int kExitGap = 3;      // replication gap: slot lost or missing
}  // namespace walbust
