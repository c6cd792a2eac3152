package embedded

import lua "github.com/yuin/gopher-lua"

// miniredis runs every Lua script (asynq's and the run store's, several an
// item) in a new gopher-lua interpreter, which allocates its value stack
// and call stack at their full default sizes: 5,120 values and 256 frames,
// about 100 KB a call, which made most of an embedded run's garbage. The
// scripts that run here use a few dozen values and no recursion, so the
// interpreters start smaller: an embedded run of 5,000 items went from
// 0.478 to 0.510 of its ideal rate (BenchmarkRunEmbedded). A script that
// needs more than luaValueStack values on its stack (an unpack of that many
// elements) fails with a stack overflow; TestLuaStacks checks the margin.
//
// These are gopher-lua's process-wide defaults, which miniredis's
// lua.NewState takes; nothing else in threadmill uses gopher-lua.
const (
	luaValueStack = 1024
	luaCallStack  = 64
)

func init() {
	lua.RegistrySize = luaValueStack
	lua.CallStackSize = luaCallStack
}
