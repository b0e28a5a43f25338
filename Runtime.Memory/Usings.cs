// The library's own namespaces, imported in every file of the library (not in consumers' code).
global using Runtime.Memory;
global using Runtime.Memory.Accounting;
global using Runtime.Memory.Allocators;
global using Runtime.Memory.Allocators.SmallObject;
global using Runtime.Memory.Arenas;
global using Runtime.Memory.Debugging;
global using Runtime.Memory.Diagnostics;
global using Runtime.Memory.Hosting;
global using Runtime.Memory.Interop;
global using Runtime.Memory.Pipeline;
global using Runtime.Memory.Platform;
global using Runtime.Memory.Threading;
global using Runtime.Memory.Tracing;
