-- The bundled demo of Runtime.Host: an interpreter's everyday work, every byte of it in the obj domain of the
-- memory service. Runs when the host is given no script; prints a few results so a run can be checked by eye.

-- Tables: an array of records, sorted and summed.
local people = {}
for i = 1, 20000 do
  people[i] = { id = i, name = "person" .. i, score = (i * 7919) % 1000 }
end
table.sort(people, function(a, b) return a.score < b.score or (a.score == b.score and a.id < b.id) end)
local total = 0
for _, p in ipairs(people) do total = total + p.score end
print(string.format("tables: %d records, lowest score %d (id %d), sum %d", #people, people[1].score, people[1].id, total))

-- Strings: building, splitting and counting words.
local parts = {}
for i = 1, 5000 do parts[#parts + 1] = string.format("word%d", i % 97) end
local text = table.concat(parts, " ")
local counts = {}
for word in text:gmatch("%S+") do counts[word] = (counts[word] or 0) + 1 end
local distinct = 0
for _ in pairs(counts) do distinct = distinct + 1 end
print(string.format("strings: %d bytes of text, %d distinct words", #text, distinct))


-- Closures: counters that keep their own state.
local function counter(step)
  local n = 0
  return function() n = n + step; return n end
end
local counters = {}
for i = 1, 1000 do counters[i] = counter(i) end
local sum = 0
for round = 1, 10 do
  for i = 1, #counters do sum = sum + counters[i]() end
end
print(string.format("closures: %d counters, sum %d", #counters, sum))

-- Coroutines: a producer and a consumer.
local producer = coroutine.wrap(function()
  for i = 1, 10000 do coroutine.yield({ seq = i, payload = string.rep("x", i % 64) }) end
  return nil
end)
local received, bytes = 0, 0
while true do
  local item = producer()
  if not item then break end
  received = received + 1
  bytes = bytes + #item.payload
end
print(string.format("coroutines: %d items, %d payload bytes", received, bytes))

-- Garbage: drop everything, collect, and see the memory go back.
local before = collectgarbage("count")
people, parts, text, counts, counters = nil, nil, nil, nil, nil
collectgarbage("collect")
local after = collectgarbage("count")
print(string.format("garbage collection: %.0f KiB in use before, %.0f KiB after", before, after))
print(string.format("memory.used(): %d bytes live in the obj domain", memory.used()))

-- zlib (the system's libz, every allocation it makes routed into the raw domain): a log, compressed and back.
if zlib then
  local log = string.rep("block 17 of arena 3 freed and reused\n", 1000)
  local packed = assert(zlib.compress(log))
  local back = assert(zlib.decompress(packed, #log))
  print(string.format("zlib: %d bytes -> %d compressed -> %s", #log, #packed, back == log and "identical" or "DIFFERENT"))
end
print()
