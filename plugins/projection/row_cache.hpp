// The projection row cache: bounded, with LRU, LFU, TTL and adaptive (W-TinyLFU) eviction.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice_projection {

enum class EvictionPolicy { lru, lfu, ttl, adaptive };

inline EvictionPolicy parse_eviction_policy(const std::string& name) {
  if (name == "lru") return EvictionPolicy::lru;
  if (name == "lfu") return EvictionPolicy::lfu;
  if (name == "ttl") return EvictionPolicy::ttl;
  if (name == "adaptive") return EvictionPolicy::adaptive;
  throw std::invalid_argument("cache policy must be lru, lfu, ttl or adaptive, not '" + name + "'");
}

struct CacheCounts {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
};

// A count-min sketch of 4-bit-style counters (capped at 15) that halves itself every
// `sample_size` increments, so old popularity fades (the TinyLFU "reset").
class FrequencySketch {
 public:
  explicit FrequencySketch(size_t capacity) { resize(capacity); }

  void resize(size_t capacity) {
    size_t width = 16;
    while (width < capacity) width <<= 1;
    width_mask_ = width - 1;
    table_.assign(kDepth * width, 0);
    sample_size_ = std::max<size_t>(10 * capacity, 160);
    additions_ = 0;
  }

  void increment(size_t hash) {
    bool added = false;
    for (size_t d = 0; d < kDepth; ++d) {
      uint8_t& c = table_[d * (width_mask_ + 1) + index(hash, d)];
      if (c < 15) {
        ++c;
        added = true;
      }
    }
    if (added && ++additions_ >= sample_size_) {
      for (auto& c : table_) c >>= 1;
      additions_ /= 2;
    }
  }

  unsigned frequency(size_t hash) const {
    unsigned f = 15;
    for (size_t d = 0; d < kDepth; ++d)
      f = std::min<unsigned>(f, table_[d * (width_mask_ + 1) + index(hash, d)]);
    return f;
  }

 private:
  static constexpr size_t kDepth = 4;
  size_t index(size_t hash, size_t depth) const {
    static constexpr uint64_t kSeeds[kDepth] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full,
                                                0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
    uint64_t h = (static_cast<uint64_t>(hash) + kSeeds[depth]) * kSeeds[(depth + 1) % kDepth];
    h ^= h >> 32;
    return static_cast<size_t>(h) & width_mask_;
  }
  std::vector<uint8_t> table_;
  size_t width_mask_ = 15;
  size_t sample_size_ = 160;
  size_t additions_ = 0;
};

// Not thread-safe: the projection stage uses it under its store lock.
//  - lru: evicts the least recently used entry.
//  - lfu: evicts the least frequently used entry (ties: the least recently used).
//  - ttl: entries expire `ttl_ms` after they were written; when full, the oldest write goes.
//  - adaptive: W-TinyLFU (Einziger, Friedman, Manes 2017, as in Caffeine): a 1% LRU window in
//    front of a segmented LRU main area (20% probation, 80% protected); an entry leaving the
//    window enters the main area only if a frequency sketch says it is used more often than
//    the main area's victim, so a one-off scan cannot flush the hot rows.
template <typename V>
class RowCache {
 public:
  struct Options {
    size_t capacity = 10000;
    EvictionPolicy policy = EvictionPolicy::adaptive;
    int64_t ttl_ms = 60000;
  };

  explicit RowCache(Options options, std::function<int64_t()> now_ms = {})
      : options_(options),
        capacity_(options.capacity),
        now_ms_(std::move(now_ms)),
        sketch_(std::max<size_t>(options.capacity, 1)) {
    if (!now_ms_) now_ms_ = [] { return int64_t{0}; };
  }

  // The cached value, or nullptr (a miss). Counts hits and misses.
  V* get(const std::string& key) {
    if (index_.empty() && capacity_ == 0) {  // off: no hashing, no sketch
      ++counts_.misses;
      return nullptr;
    }
    if (options_.policy == EvictionPolicy::adaptive) sketch_.increment(hash_(key));
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++counts_.misses;
      return nullptr;
    }
    Node& n = *it->second;
    if (options_.policy == EvictionPolicy::ttl && now_ms_() >= n.written_ms + options_.ttl_ms) {
      erase_node(it);
      ++counts_.evictions;
      ++counts_.misses;
      return nullptr;
    }
    ++counts_.hits;
    touch(it->second);
    return &it->second->value;
  }

  // The cached value (not expired) without counting or reordering anything, or nullptr.
  const V* peek(const std::string& key) const {
    if (index_.empty()) return nullptr;
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    const Node& n = *it->second;
    if (options_.policy == EvictionPolicy::ttl && now_ms_() >= n.written_ms + options_.ttl_ms)
      return nullptr;
    return &n.value;
  }

  // Inserts or replaces; may evict.
  void put(const std::string& key, V value) {
    if (capacity_ == 0) return;
    // One lookup for both cases: a new key gets its slot here and its node below.
    auto [it, added] = index_.try_emplace(key);
    if (!added) {
      it->second->value = std::move(value);
      it->second->written_ms = now_ms_();
      if (options_.policy == EvictionPolicy::ttl) {
        // A rewrite restarts the entry's time to live: it moves to the young end.
        lists_[0].splice(lists_[0].begin(), lists_[0], it->second);
      } else {
        touch(it->second);
      }
      return;
    }
    Node n{key, std::move(value), now_ms_(), 1, ++tick_, Segment::main};
    if (options_.policy == EvictionPolicy::adaptive) {
      n.segment = Segment::window;
      lists_[kWindow].push_front(std::move(n));
      it->second = lists_[kWindow].begin();
      balance();
      return;
    }
    lists_[0].push_front(std::move(n));
    auto pos = lists_[0].begin();
    it->second = pos;
    if (options_.policy == EvictionPolicy::lfu) lfu_order_.insert({pos->freq, pos->tick, pos});
    while (index_.size() > capacity_) evict_one();
  }

  void erase(const std::string& key) {
    auto it = index_.find(key);
    if (it != index_.end()) erase_node(it);
  }

  void clear() {
    index_.clear();
    lfu_order_.clear();
    for (auto& l : lists_) l.clear();
  }

  // Shrinks (memory pressure) or grows back; evicts down to the new capacity.
  void set_capacity(size_t capacity) {
    capacity_ = capacity;
    if (options_.policy == EvictionPolicy::adaptive)
      balance();
    else
      while (index_.size() > capacity_) evict_one();
  }

  size_t size() const { return index_.size(); }
  size_t capacity() const { return capacity_; }
  size_t configured_capacity() const { return options_.capacity; }
  const CacheCounts& counts() const { return counts_; }
  EvictionPolicy policy() const { return options_.policy; }

 private:
  enum class Segment { window, probation, protected_, main };
  struct Node {
    std::string key;
    V value;
    int64_t written_ms;
    uint64_t freq;
    uint64_t tick;
    Segment segment;
  };
  using List = std::list<Node>;
  using Iter = typename List::iterator;
  struct LfuLess {
    bool operator()(const std::tuple<uint64_t, uint64_t, Iter>& a,
                    const std::tuple<uint64_t, uint64_t, Iter>& b) const {
      return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
    }
  };
  // lru/lfu/ttl use lists_[0]; adaptive uses window, probation and protected.
  static constexpr size_t kWindow = 0, kProbation = 1, kProtected = 2;

  static size_t list_of(Segment s) {
    switch (s) {
      case Segment::probation:
        return kProbation;
      case Segment::protected_:
        return kProtected;
      default:
        return 0;
    }
  }

  void touch(Iter n) {
    switch (options_.policy) {
      case EvictionPolicy::lru:
        lists_[0].splice(lists_[0].begin(), lists_[0], n);
        break;
      case EvictionPolicy::lfu:
        lfu_order_.erase({n->freq, n->tick, n});
        ++n->freq;
        n->tick = ++tick_;
        lfu_order_.insert({n->freq, n->tick, n});
        break;
      case EvictionPolicy::ttl:
        break;  // expiry is by write time: reads do not extend it
      case EvictionPolicy::adaptive:
        if (n->segment == Segment::window) {
          lists_[kWindow].splice(lists_[kWindow].begin(), lists_[kWindow], n);
        } else if (n->segment == Segment::probation) {
          n->segment = Segment::protected_;
          lists_[kProtected].splice(lists_[kProtected].begin(), lists_[kProbation], n);
          balance();
        } else {
          lists_[kProtected].splice(lists_[kProtected].begin(), lists_[kProtected], n);
        }
        break;
    }
  }

  void erase_node(typename std::unordered_map<std::string, Iter>::iterator it) {
    Iter n = it->second;
    if (options_.policy == EvictionPolicy::lfu) lfu_order_.erase({n->freq, n->tick, n});
    lists_[list_of(n->segment)].erase(n);
    index_.erase(it);
  }

  void evict(Iter n) {
    ++counts_.evictions;
    erase_node(index_.find(n->key));
  }

  void evict_one() {
    if (options_.policy == EvictionPolicy::lfu) {
      evict(std::get<2>(*lfu_order_.begin()));
    } else {
      evict(std::prev(lists_[0].end()));
    }
  }

  // W-TinyLFU: keep the window at ~1% and the protected segment at ~80% of the main area;
  // resolve overflow by a frequency duel between the window's victim and probation's.
  void balance() {
    const size_t window_cap = std::max<size_t>(1, capacity_ / 100);
    const size_t main_cap = capacity_ > window_cap ? capacity_ - window_cap : 0;
    const size_t protected_cap = main_cap * 8 / 10;
    while (lists_[kProtected].size() > protected_cap) {
      Iter demoted = std::prev(lists_[kProtected].end());
      demoted->segment = Segment::probation;
      lists_[kProbation].splice(lists_[kProbation].begin(), lists_[kProtected], demoted);
    }
    while (lists_[kWindow].size() > window_cap) {
      Iter candidate = std::prev(lists_[kWindow].end());
      if (lists_[kProbation].size() + lists_[kProtected].size() < main_cap) {
        candidate->segment = Segment::probation;
        lists_[kProbation].splice(lists_[kProbation].begin(), lists_[kWindow], candidate);
        continue;
      }
      List& victims = lists_[kProbation].empty() ? lists_[kProtected] : lists_[kProbation];
      if (victims.empty()) {
        evict(candidate);
        continue;
      }
      Iter victim = std::prev(victims.end());
      if (sketch_.frequency(hash_(candidate->key)) > sketch_.frequency(hash_(victim->key))) {
        evict(victim);
        candidate->segment = Segment::probation;
        lists_[kProbation].splice(lists_[kProbation].begin(), lists_[kWindow], candidate);
      } else {
        evict(candidate);
      }
    }
    while (index_.size() > capacity_) {
      List& from = !lists_[kProbation].empty() ? lists_[kProbation]
                   : !lists_[kWindow].empty()  ? lists_[kWindow]
                                               : lists_[kProtected];
      evict(std::prev(from.end()));
    }
  }

  Options options_;
  size_t capacity_;
  std::function<int64_t()> now_ms_;
  std::hash<std::string> hash_;
  FrequencySketch sketch_;
  List lists_[3];
  std::unordered_map<std::string, Iter> index_;
  std::set<std::tuple<uint64_t, uint64_t, Iter>, LfuLess> lfu_order_;
  uint64_t tick_ = 0;
  CacheCounts counts_;
};

}  // namespace sluice_projection
