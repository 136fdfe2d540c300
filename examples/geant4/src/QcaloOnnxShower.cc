#include "QcaloOnnxShower.hh"

#include <stdexcept>

namespace {
// The metadata value of `key`, or "" when the file has none.
std::string Metadata(Ort::Session& session, const char* key) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::ModelMetadata meta = session.GetModelMetadata();
  Ort::AllocatedStringPtr value = meta.LookupCustomMetadataMapAllocated(key, allocator);
  return value ? std::string(value.get()) : std::string();
}

// Whether the entry of `name` in the noise-contract JSON says "uniform". The JSON is written by
// qcalo (qcalo.models.noise.contract_to_json): one object per input, "name" first.
bool IsUniform(const std::string& contract, const std::string& name) {
  const std::size_t at = contract.find("\"name\": \"" + name + "\"");
  if (at == std::string::npos) throw std::runtime_error("noise input " + name + " not in the contract");
  const std::size_t end = contract.find('}', at);
  return contract.substr(at, end - at).find("\"uniform\"") != std::string::npos;
}
}  // namespace

QcaloOnnxShower::QcaloOnnxShower(const std::string& path, int64_t expectedVoxels, int threads)
    : fEnv(ORT_LOGGING_LEVEL_WARNING, "qcalo") {
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(threads);
  fSession = Ort::Session(fEnv, path.c_str(), options);
  fVoxels = std::stoll(Metadata(fSession, "n_voxels"));
  if (fVoxels != expectedVoxels) {
    throw std::runtime_error(path + ": made for geometry '" + Metadata(fSession, "geometry") + "' with " +
                             std::to_string(fVoxels) + " voxels; this calorimeter has " +
                             std::to_string(expectedVoxels));
  }
  const std::string contract = Metadata(fSession, "noise_contract");
  Ort::AllocatorWithDefaultOptions allocator;
  for (std::size_t i = 0; i < fSession.GetInputCount(); ++i) {
    std::string name = fSession.GetInputNameAllocated(i, allocator).get();
    fInputNames.push_back(name);
    if (i == 0) continue;  // incident_energies
    const auto shape = fSession.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
    fNoise.push_back({name, shape.at(1), IsUniform(contract, name)});
  }
}

std::vector<float> QcaloOnnxShower::Run(const std::vector<float>& energies,
                                        std::map<std::string, std::vector<float>>& noise) {
  const int64_t n = static_cast<int64_t>(energies.size());
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> inputs;
  std::vector<float> e(energies);
  const int64_t energyShape[2] = {n, 1};
  inputs.push_back(Ort::Value::CreateTensor<float>(memory, e.data(), e.size(), energyShape, 2));
  for (const auto& input : fNoise) {
    std::vector<float>& values = noise.at(input.name);
    if (static_cast<int64_t>(values.size()) != n * input.width)
      throw std::runtime_error("noise " + input.name + " has the wrong size");
    const int64_t shape[2] = {n, input.width};
    inputs.push_back(Ort::Value::CreateTensor<float>(memory, values.data(), values.size(), shape, 2));
  }
  std::vector<const char*> inputNames;
  for (const auto& name : fInputNames) inputNames.push_back(name.c_str());
  const char* outputNames[1] = {"showers"};
  auto outputs = fSession.Run(Ort::RunOptions{nullptr}, inputNames.data(), inputs.data(),
                              inputs.size(), outputNames, 1);
  const float* data = outputs.front().GetTensorData<float>();
  return std::vector<float>(data, data + n * fVoxels);
}

std::vector<float> QcaloOnnxShower::Generate(float energyMeV, std::mt19937_64& engine) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::map<std::string, std::vector<float>> noise;
  for (const auto& input : fNoise) {  // drawn in the contract's order
    std::vector<float>& values = noise[input.name];
    values.resize(static_cast<std::size_t>(input.width));
    for (float& v : values) v = input.uniform ? uniform(engine) : normal(engine);
  }
  return Run({energyMeV}, noise);
}
