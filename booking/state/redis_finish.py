"""A Finish (backends.Finish) applied to Redis by one script: one command, one reply.

The same changes as one MULTI/EXEC pipeline cost a worker about 12% of its CPU in
`bench/holds.py --rate 600` (py-spy, GIL samples): six to eight commands per answered
request, each packed, queued and answered ('QUEUED') one by one in Python. A script
takes the whole batch as one command's keys and arguments, and Redis runs it as
atomically as the transaction did. backends.LocalState.finish is its in-process twin;
tests/test_state_backends.py runs the same behaviour tests on both.
"""

# KEYS: the in-flight index, then the answered requests' record keys, the groups they
# leave, the open-hold sets gaining a hold, the open-hold sets losing one, the counters.
# ARGV: now, record ttl, counter ttl, the six counts, then per part its values: record
# values; index members; group members; (member, expiry) pairs; members; amounts.
_FINISH = """
local now, ttl, cttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local nr, ni, ng = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local no, nc, nk = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local k, a = 1, 9
for i = 1, nr do redis.call('SET', KEYS[k + i], ARGV[a + i], 'EX', ttl) end
k, a = k + nr, a + nr
local i = 1
while i <= ni do
  local last = math.min(ni, i + 499)
  redis.call('ZREM', KEYS[1], unpack(ARGV, a + i, a + last))
  i = last + 1
end
a = a + ni
for j = 1, ng do redis.call('SREM', KEYS[k + j], ARGV[a + j]) end
k, a = k + ng, a + ng
local touched, order = {}, {}
local function touch(key)
  if not touched[key] then touched[key] = true; order[#order + 1] = key end
end
for j = 1, no do
  local key, member, expiry = KEYS[k + j], ARGV[a + 2 * j - 1], ARGV[a + 2 * j]
  redis.call('ZADD', key, expiry, member)
  local t = math.max(60, math.floor(tonumber(expiry) - now) + 60)
  redis.call('EXPIRE', key, t, 'NX')
  redis.call('EXPIRE', key, t, 'GT')
  touch(key)
end
k, a = k + no, a + 2 * no
for j = 1, nc do
  redis.call('ZREM', KEYS[k + j], ARGV[a + j])
  touch(KEYS[k + j])
end
k, a = k + nc, a + nc
for _, key in ipairs(order) do redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1]) end
for j = 1, nk do
  redis.call('INCRBY', KEYS[k + j], ARGV[a + j])
  redis.call('EXPIRE', KEYS[k + j], cttl)
end
return nr
"""


class RedisFinish:
    """Applies Finishes to one Redis client."""

    def __init__(self, redis):
        self.script = redis.register_script(_FINISH)

    def __call__(self, done):
        keys = [done.index, *done.records]
        args = [repr(done.now), done.ttl, done.counts_ttl, len(done.records),
                len(done.index_members), len(done.group_members), len(done.opened),
                len(done.closed), len(done.counts), *done.records.values(),
                *done.index_members]
        for group, member in done.group_members:
            keys.append(group)
            args.append(member)
        for key, member, expiry in done.opened:
            keys.append(key)
            args += (member, repr(expiry))
        for key, member in done.closed:
            keys.append(key)
            args.append(member)
        for key, amount in done.counts.items():
            keys.append(key)
            args.append(amount)
        self.script(keys=keys, args=args)
