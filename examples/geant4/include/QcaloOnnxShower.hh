// A qcalo model exported with `qcalo export`, run by ONNX Runtime's C++ API.
//
// The file's inputs are `incident_energies` (N, 1) float32 MeV and the noise tensors of its
// metadata `noise_contract` (each (N, width) float32, standard normal or uniform on [0, 1)); its
// output `showers` (N, V) float32 MeV. The caller owns the random numbers: Generate() draws them
// from the given engine, Run() takes them as given (to reproduce `qcalo generate` / Python).
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <onnxruntime_cxx_api.h>

struct QcaloNoiseInput {
  std::string name;
  int64_t width = 0;
  bool uniform = false;  // false: standard normal
};

class QcaloOnnxShower {
 public:
  // `expectedVoxels`: the voxel count of the calorimeter the deposits go to; a file made for
  // another geometry (metadata n_voxels) is refused with std::runtime_error.
  QcaloOnnxShower(const std::string& path, int64_t expectedVoxels, int threads = 1);

  // Showers (n × V, row-major) MeV for n incident energies (MeV) and the named noise tensors.
  std::vector<float> Run(const std::vector<float>& energies,
                         std::map<std::string, std::vector<float>>& noise);
  // One shower with noise drawn from `engine`.
  std::vector<float> Generate(float energyMeV, std::mt19937_64& engine);

  int64_t NumberOfVoxels() const { return fVoxels; }
  const std::vector<QcaloNoiseInput>& NoiseContract() const { return fNoise; }

 private:
  Ort::Env fEnv;
  Ort::Session fSession{nullptr};
  std::vector<QcaloNoiseInput> fNoise;
  std::vector<std::string> fInputNames;
  int64_t fVoxels = 0;
};
