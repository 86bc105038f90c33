// bench/search_hnswlib.cpp — the hnswlib side of bench/search: builds
// hnswlib's HierarchicalNSW (Debian libhnswlib-dev, header-only) with
// InnerProductSpace and the same M / ef_construction on the file that
// bench_search dumped, then prints recall@10 and single-thread QPS for the
// same ef sweep, in bench_search's line format. Built by bench/search with
// g++; deliberately not part of the C build.
#include <hnswlib/hnswlib.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

static double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: search_hnswlib FILE NAME\n");
        return 2;
    }
    FILE *f = std::fopen(argv[1], "rb");
    if (!f) {
        std::perror(argv[1]);
        return 1;
    }
    uint32_t hdr[4];
    if (std::fread(hdr, sizeof hdr, 1, f) != 1)
        return 1;
    size_t n = hdr[0], nq = hdr[1], dim = hdr[2], k = hdr[3];
    std::vector<float> base(n * dim), q(nq * dim);
    std::vector<int32_t> gt(nq * k);
    if (std::fread(base.data(), 4, base.size(), f) != base.size() ||
        std::fread(q.data(), 4, q.size(), f) != q.size() ||
        std::fread(gt.data(), 4, gt.size(), f) != gt.size())
        return 1;
    std::fclose(f);

    hnswlib::InnerProductSpace space(dim);
    hnswlib::HierarchicalNSW<float> h(&space, n, 16, 200, 100);
    double t = now();
    for (size_t i = 0; i < n; i++)
        h.addPoint(base.data() + i * dim, i);
    std::printf("hnsw impl=hnswlib data=%s n=%zu dim=%zu M=16 efc=200 build_s=%.1f\n", argv[2], n,
                dim, now() - t);
    std::fflush(stdout);
    for (size_t ef : {16, 32, 64, 128, 256, 512, 1024, 2048}) {
        h.setEf(ef);
        size_t found = 0;
        t = now();
        for (size_t i = 0; i < nq; i++) {
            auto r = h.searchKnn(q.data() + i * dim, k);
            while (!r.empty()) {
                int64_t id = (int64_t)r.top().second;
                r.pop();
                for (size_t g = 0; g < k; g++) {
                    if (gt[i * k + g] == id) {
                        found++;
                        break;
                    }
                }
            }
        }
        t = now() - t;
        double rec = (double)found / (double)(nq * k);
        std::printf("hnsw impl=hnswlib data=%s ef=%zu recall=%.4f qps=%.0f\n", argv[2], ef, rec,
                    (double)nq / t);
        std::fflush(stdout);
        if (rec > 0.995)
            break;
    }
    return 0;
}
